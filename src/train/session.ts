/**
 * What every training run shares (SFT and GRPO): the policy in f32 master weights, its training
 * graph and optimiser, and checkpoints: a fresh start from a Hugging Face folder, or `--resume`
 * from the latest checkpoint of the output folder, refused by name when that checkpoint belongs
 * to another architecture.
 */
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FileFormatError, InvalidArgumentError } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import type { HostTensor } from '../io/tensor.js';
import { loadModelConfig, type ModelConfig } from '../model/config.js';
import { PolicyModel } from '../model/policy.js';
import { TrainingGraph } from '../model/training.js';
import { latestCheckpoint, loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { Optimizer, type OptimizerConfig } from './optimizer.js';

export interface SessionOptions {
  /** The Hugging Face folder the run starts from (config, weights, tokenizer). */
  model: string;
  /** Output folder: checkpoints, metrics. */
  out: string;
  /** Continue from the latest checkpoint in `out`. */
  resume: boolean;
  /** Remove a non-empty `out` before a fresh start. Without it or `resume`, a non-empty `out` is refused. */
  overwrite?: boolean;
  optimizer: OptimizerConfig;
  /** Checkpoints kept (older ones are removed after a save). */
  keep: number;
  /** Weights larger than this many bytes load (and train) in row windows; default: one storage binding (LoadWeightsOptions.maxWindowBytes). */
  maxWindowBytes?: number;
}

/** The config fields that make two checkpoints the same architecture. */
const SHAPE_FIELDS = ['architecture', 'hiddenSize', 'intermediateSize', 'numLayers', 'numHeads', 'numKeyValueHeads', 'headDim', 'vocabSize', 'tieWordEmbeddings', 'attentionBias'] as const;

function checkSameArchitecture(checkpoint: string, have: ModelConfig, want: ModelConfig, modelDir: string): void {
  for (const field of SHAPE_FIELDS) {
    if (have[field] !== want[field]) {
      throw new FileFormatError(join(checkpoint, 'config.json'), `a checkpoint of the --model architecture (${field} = ${String(want[field])}, as in ${modelDir})`, `${field} = ${String(have[field])}: a checkpoint from another architecture`);
    }
  }
}

/**
 * A fresh run into a folder that holds another run's checkpoints would mix the two (stale
 * checkpoints, latest.json and pruning pointing at the wrong one): refused unless the user
 * continues it (--resume) or replaces it (--overwrite), as Hugging Face's overwrite_output_dir.
 */
function prepareOutputFolder({ out, resume, overwrite }: Pick<SessionOptions, 'out' | 'resume' | 'overwrite'>): void {
  if (resume && overwrite) throw new InvalidArgumentError('--resume / --overwrite', 'one of them (continue the run in --out, or replace it)', 'both');
  if (resume || !existsSync(out) || !statSync(out).isDirectory()) return;
  const entries = readdirSync(out);
  if (entries.length === 0) return;
  if (!overwrite) {
    const shown = entries.slice(0, 3).join(', ') + (entries.length > 3 ? ', ...' : '');
    throw new InvalidArgumentError('--out', 'a new or empty folder (or --resume to continue the run in it, --overwrite to replace it)', `${out}, which holds ${shown}`);
  }
  rmSync(out, { recursive: true });
}

export class TrainingSession {
  private constructor(
    readonly ctx: GpuContext,
    readonly model: PolicyModel,
    readonly graph: TrainingGraph,
    readonly optimizer: Optimizer,
    /** Updates already taken (0 on a fresh start). */
    readonly startStep: number,
    /** The trainer state saved with the checkpoint resumed from; null on a fresh start. */
    readonly resumedState: Record<string, unknown> | null,
    private readonly options: SessionOptions,
  ) {}

  static async open(ctx: GpuContext, options: SessionOptions): Promise<TrainingSession> {
    prepareOutputFolder(options);
    const config = loadModelConfig(options.model);
    let source = options.model;
    let resumed: Awaited<ReturnType<typeof loadCheckpoint>> | null = null;
    if (options.resume) {
      const latest = await latestCheckpoint(options.out);
      if (latest === null) throw new InvalidArgumentError('--resume', `a checkpoint in ${options.out}`, 'none (start without --resume)');
      checkSameArchitecture(latest, loadModelConfig(latest), config, options.model);
      resumed = await loadCheckpoint(latest);
      source = latest;
    }
    const model = await PolicyModel.load(ctx, source, { dtype: 'f32', maxWindowBytes: options.maxWindowBytes });
    let graph: TrainingGraph | null = null;
    try {
      graph = TrainingGraph.create(model);
      const optimizer = await Optimizer.create(graph, options.optimizer);
      if (resumed?.optimizer) optimizer.loadState(resumed.optimizer);
      return new TrainingSession(ctx, model, graph, optimizer, resumed?.step ?? 0, resumed?.trainerState ?? null, options);
    } catch (err) {
      graph?.destroy();
      model.destroy();
      throw err;
    }
  }

  /** Saves weights, optimiser moments and `trainerState` atomically as checkpoint-<step>; returns its folder. */
  async save(step: number, trainerState: Record<string, unknown>): Promise<string> {
    const tensors: Record<string, HostTensor> = {};
    const values = await this.graph.readParameters();
    for (const p of this.graph.parameters) tensors[p.name] = { dtype: 'f32', shape: p.shape, data: values.get(p.name)! };
    return saveCheckpoint(this.options.out, { step, sourceModelDir: this.options.model, tensors, optimizer: await this.optimizer.state(), trainerState },
      { keep: this.options.keep, tied: this.model.weights.tied });
  }

  destroy(): void {
    this.optimizer.destroy();
    this.graph.destroy();
    this.model.destroy();
  }
}
