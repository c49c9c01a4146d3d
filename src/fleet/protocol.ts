/**
 * What travels through the queue. Every job has the same header: the protocol version, the `kind`
 * of work, the run it belongs to, and the fingerprint of the model it must run on; its input and
 * options depend on the kind. A result carries the kind's output keyed by input line, and a report
 * of who did the work and how fast.
 *
 * Today's one kind is "score": lines of JSON in `score-completions`' input forms, scored as the
 * one-machine command does. A later "generate" kind (G completions for each of these prompts with
 * weights version k, for distributed GRPO rollouts) fits the same header: its `model` is the
 * fingerprint of version k's checkpoint, its input the prompt lines, its options the sampling
 * settings, its output per line the completions with their log-probs. Workers that see a new kind
 * or a newer protocol refuse the job by name instead of guessing.
 */
import { createHash } from 'node:crypto';
import type { ScoreOptions } from '../score/engine.js';
import type { InputLine, LineOutcome } from '../score/lines.js';
import type { ModelFingerprint } from './fingerprint.js';

export const PROTOCOL_VERSION = 1;
/** BullMQ's key prefix (its default), for every queue of the fleet. */
export const BULLMQ_PREFIX = 'bull';
/** The queue's name when --queue-name is not given. */
export const DEFAULT_QUEUE_NAME = 'intuitor-score';

export interface JobHeader {
  protocol: typeof PROTOCOL_VERSION;
  kind: string;
  /** The producer's run (see runId). */
  run: string;
  /** The model the job must run on. */
  model: ModelFingerprint;
}

export interface ScoreJob extends JobHeader {
  kind: 'score';
  lines: InputLine[];
  /** The scoring options, and how the worker must have loaded its weights (as --weights says). */
  options: Pick<ScoreOptions, 'temperature' | 'perToken'> & { weights: 'as-stored' | 'f32' };
}

/** Every kind of job (one today; see the module comment for the next). */
export type FleetJob = ScoreJob;

/** Who did a job and what it cost. */
export interface JobReport {
  worker: string;
  adapter: string;
  /** Completion tokens scored. */
  tokens: number;
  /** Time in the scorer (parsing, tokenising and the GPU), ms. */
  workMs: number;
  /** When the worker finished (ms since the epoch, its clock). */
  finishedAt: number;
}

export interface ScoreJobResult {
  kind: 'score';
  outcomes: LineOutcome[];
  report: JobReport;
}

export type FleetJobResult = ScoreJobResult;

/**
 * A run's id: the model, the options and where the output goes, so that `--resume` (same command)
 * finds the jobs it enqueued before, and another output or model never shares them.
 */
export function runId(model: ModelFingerprint, options: ScoreJob['options'], output: string): string {
  return createHash('sha256').update(JSON.stringify({ model: model.digest, options, output })).digest('hex').slice(0, 16);
}

/**
 * A chunk's job id: its run, its first line and a hash of its lines' text. Adding it twice adds
 * one job (BullMQ keeps the first), and an input edited between runs never reuses a stale result.
 */
export function chunkJobId(run: string, lines: readonly InputLine[]): string {
  const hash = createHash('sha256');
  for (const { line, text } of lines) hash.update(`${line}\n${text}\n`);
  return `${run}.${lines[0]?.line ?? 0}.${hash.digest('hex').slice(0, 16)}`;
}

/** "lines 12–40" of a chunk, for errors and logs. */
export function lineSpan(lines: readonly { line: number }[]): string {
  if (lines.length === 0) return 'no lines';
  const first = lines[0]!.line;
  const last = lines.at(-1)!.line;
  return first === last ? `line ${first}` : `lines ${first}–${last}`;
}

/** Why a worker cannot take `job`, or null when it can. */
export function protocolProblem(job: unknown): string | null {
  const header = job as Partial<JobHeader> | null;
  if (typeof header !== 'object' || header === null) return 'the job is not an object';
  if (header.protocol !== PROTOCOL_VERSION) return `the job speaks fleet protocol ${String(header.protocol)}, this worker ${PROTOCOL_VERSION} (upgrade the older side)`;
  if (header.kind !== 'score') return `the job's kind ${JSON.stringify(header.kind)} is not one this worker does (score)`;
  return null;
}
