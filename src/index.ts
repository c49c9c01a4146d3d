/** intuitor's public API. */
export { IntuitorError, InvalidArgumentError, FileFormatError, BackendUnavailableError, GpuError } from './errors.js';
export { DTYPES, type DType, type HostArray, encode, bf16BitsToFloat, floatToBf16Bits, f16BitsToFloat, floatToF16Bits } from './dtype.js';
export { GpuContext, listAdapters, type GpuContextOptions, type AdapterDescription } from './gpu/context.js';
export { timeOnGpu, copyBandwidth, type GpuTiming } from './gpu/timing.js';
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
export { loadWeights, expectedParameters, type ModelWeights, type LayerWeights, type GpuTensor, type LoadWeightsOptions } from './model/weights.js';
export { PolicyModel, type PreparedForward, type PreparedDecode, type KvCache, type GenerateOptions } from './model/policy.js';
export { argmax, prepareArgmax, referenceArgmax } from './ops/argmax.js';
export { prepareKvWrite, prepareAttentionDecode, referenceKvWrite } from './ops/kv-cache.js';
export { attention, prepareAttention, referenceAttention, type AttentionShape } from './ops/attention.js';
export { linear, prepareLinear, referenceLinear, type LinearShape } from './ops/linear.js';
export { rmsNorm, prepareRmsNorm, referenceRmsNorm, type RmsNormShape } from './ops/rmsnorm.js';
export { embedding, prepareEmbedding, referenceEmbedding, type EmbeddingShape } from './ops/embedding.js';
export { rope, prepareRope, referenceRope, type RopeShape } from './ops/rope.js';
export { swiglu, prepareSwiglu, referenceSwiglu, type SwigluShape } from './ops/swiglu.js';
export { add, prepareAdd, referenceAdd, type AddShape } from './ops/add.js';
