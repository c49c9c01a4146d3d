/** intuitor's public API. */
export { IntuitorError, InvalidArgumentError, FileFormatError, BackendUnavailableError, GpuError } from './errors.js';
export { DTYPES, type DType, type HostArray, encode, bf16BitsToFloat, floatToBf16Bits, f16BitsToFloat, floatToF16Bits } from './dtype.js';
export { GpuContext, listAdapters, type GpuContextOptions, type AdapterDescription } from './gpu/context.js';
export { timeOnGpu, copyBandwidth, type GpuTiming } from './gpu/timing.js';
export { profileDispatches, profileTable, type DispatchProfile, type DispatchProfileRow } from './gpu/profile.js';
export {
  BACKENDS, POISON_BITS, tokenStats, tokenStatsGpu, tokenStatsBackward, tokenStatsBackwardGpu,
  type Backend, type ResolvedBackend, type TokenStats, type TokenStatsArgs, type TokenStatsBackwardArgs, type TokenStatsOptions,
} from './ops/token-stats.js';
export { prepareForward, prepareBackward, allocateOutputs, type PreparedDispatch, type GpuStatsInputs, type GpuStatsOutputs, type GpuBackwardInputs } from './ops/token-stats/webgpu.js';
export { referenceForward, referenceBackward } from './ops/token-stats/reference.js';
export { matmul, prepareMatmul, referenceMatmul, type MatmulShape, type PreparedMatmul } from './ops/matmul.js';
export { nativeStatus, type NativeStatus } from './native/addon.js';
export { readNpy, writeNpy, parseNpy, encodeNpy } from './io/npy.js';
export { openSafetensors, writeSafetensors, type SafetensorsFile, type SafetensorsEntry } from './io/safetensors.js';
export type { HostTensor, TensorDType } from './io/tensor.js';
export { parseModelConfig, loadModelConfig, ropeInverseFrequencies, type ModelConfig, type Architecture, type RopeScaling } from './model/config.js';
export { PolicyTokenizer, type ChatMessage } from './model/tokenizer.js';
export { loadWeights, expectedParameters, hasOutputProjectionBias, type ModelWeights, type LayerWeights, type GpuTensor, type LoadWeightsOptions } from './model/weights.js';
export { PolicyModel, type PreparedForward, type PreparedDecode, type KvCache, type GenerateOptions, type Generation } from './model/policy.js';
export { argmax, prepareArgmax, referenceArgmax } from './ops/argmax.js';
export { prepareAttentionDecode } from './ops/kv-cache.js';
export { attention, prepareAttention, referenceAttention, ATTENTION_VARIANTS, DEFAULT_ATTENTION_VARIANT, type AttentionShape, type AttentionTuning, type AttentionVariant } from './ops/attention.js';
export { linear, prepareLinear, referenceLinear, type LinearShape } from './ops/linear.js';
export { rmsNorm, prepareRmsNorm, referenceRmsNorm, type RmsNormShape } from './ops/rmsnorm.js';
export { linearNorm, prepareLinearNorm, referenceLinearNorm, linearNormPlan, linearNormScratch, type LinearNormShape, type LinearNormBuffers } from './ops/linear-norm.js';
export { embedding, prepareEmbedding, referenceEmbedding, type EmbeddingShape } from './ops/embedding.js';
export { rope, prepareRope, referenceRope, ropeBackward, prepareRopeBackward, referenceRopeBackward, prepareRopeQk, referenceRopeQk, type RopeShape, type RopeQkShape, type RopeQkBuffers } from './ops/rope.js';
export { swiglu, prepareSwiglu, referenceSwiglu, type SwigluShape } from './ops/swiglu.js';
export { add, prepareAdd, referenceAdd, type AddShape } from './ops/add.js';
export { linearBackward, prepareLinearBackward, referenceLinearBackward, type LinearBackwardShape } from './ops/linear-backward.js';
export { attentionBackward, prepareAttentionBackward, referenceAttentionBackward } from './ops/attention-backward.js';
export { rmsNormBackward, prepareRmsNormBackward, referenceRmsNormBackward } from './ops/rmsnorm-backward.js';
export { swigluBackward, prepareSwigluBackward, referenceSwigluBackward } from './ops/swiglu-backward.js';
export { embeddingBackward, prepareEmbeddingBackward, referenceEmbeddingBackward } from './ops/embedding-backward.js';
export {
  lmHeadStats, lmHeadStatsBackward, prepareLmHeadStats, prepareLmHeadStatsBackward, referenceLmHeadStats, referenceLmHeadStatsBackward, lmHeadStatsPlan,
  type LmHeadStatsShape, type LmHeadStatsBackwardBuffers,
} from './ops/lm-head-stats.js';
export { sample, prepareSample, checkSamplingOptions, referenceSamplingDistribution, type SamplingOptions, type PreparedSample } from './sampling/sample.js';
export { TrainingGraph, NonFiniteError, type TrainableParameter, type PreparedTrainStep, type TrainStepOptions } from './model/training.js';
export { AdamW, referenceAdamW, type AdamWOptions, type AdamWStep, type AdamWState, type OptimParam } from './optim/adamw.js';
export { prepareGradSquares, globalNorm, clipScale, firstNonFinite } from './optim/grad-norm.js';
export { learningRate, type ScheduleOptions } from './optim/schedule.js';
export { saveCheckpoint, latestCheckpoint, loadCheckpoint, type CheckpointContent } from './train/checkpoint.js';
export { Optimizer, DEFAULT_OPTIMIZER, type OptimizerConfig } from './train/optimizer.js';
export { runSft, type SftOptions, type SftRecord } from './train/sft.js';
export { nextTokenBatch, type NextTokenBatch } from './train/batch.js';
export { lineChartSvg, type LineChartOptions } from './train/plot.js';
export { markdownTable, consoleTable } from './train/summary.js';
export { Rng, deriveSeed, mulberry32 } from './util/random.js';
export { computeAdvantages, aggregateRewards, groupRewardStats, type RewardScaling, type RewardAggregation } from './rl/advantages.js';
export { grpoLoss, LOSS_TYPES, KL_ESTIMATORS, type GrpoLossArgs, type GrpoLossResult, type LossType, type KlEstimator } from './rl/loss.js';
export { REWARDS, parseRewardSpec, resolveRewards, loadUserReward, evaluateReward, RewardError, type RewardFunction, type RewardSample } from './rl/rewards.js';
export { extractAnswer, answersEqual, normalizeAnswer } from './rl/verifier.js';
export { selectBest, SELECTION_RULES, type SelectionRule, type SelectionCandidate } from './rl/selection.js';
export { CollapseMonitor, collapseVerdict, DEFAULT_COLLAPSE_THRESHOLDS, type CollapseThresholds, type CollapseReport } from './rl/monitors.js';
export { runGrpo, type GrpoResult } from './rl/trainer.js';
export { GRPO_DEFAULTS, resolveGrpoConfig, type GrpoConfig, type GrpoConfigInput } from './rl/config.js';
export { evaluate, type Evaluation } from './tasks/evaluate.js';
export { rollout, scoreCompletions, scoringLayout, type Completion } from './rl/rollout.js';
export { Scorer, resultJson, type ScoreOptions, type ScoreResult, type ScorerOptions } from './score/engine.js';
export { parseScoreItem, ItemError, type ScoreItem } from './score/items.js';
export { scoreLines, localChunkScorer, type ChunkScorer, type InputLine, type LineOutcome } from './score/lines.js';
export { scoreFile, BadLineError, type ScoreFileOptions, type FileSummary, type FileProgress } from './score/pipeline.js';
export { TASKS, getTask, type Task } from './tasks/index.js';
export { readJsonlDataset } from './tasks/dataset.js';
export { buildBaseModel, BASE_MODEL_DEFAULTS, type BuildBaseModelOptions, type BaseModelRecord } from './train/base-model.js';
export { charTokenizerJson } from './model/char-tokenizer.js';
export { linearPlan, type LinearPlan } from './ops/linear.js';
export { ScoringServer, SERVE_DEFAULTS, SERVE_REWARDS, API_KEY_ENV, RELOAD_KEY_ENV, type ScoringServerOptions, type ServeReward } from './serve/server.js';
export { ScoringBatcher, QueueFullError, type BatchingOptions, type ScoreFunction } from './serve/batching.js';
export { createScoringMetrics, recordBatch, type ScoringMetrics } from './serve/metrics.js';
export { resolveModelFolder, ModelPathError } from './serve/paths.js';
export { rowsPerWindow, type RowWindow } from './ops/split.js';
