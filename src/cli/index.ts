/**
 * The intuitor command line. Every failure is one line on stderr. Bad input (our typed argument
 * and file errors, and system errors on a path: a missing file, an existing one in the way, no
 * permission, a full disk) exits with status 2, naming the argument or file, what was expected
 * and what came; anything else is an internal error and exits 1, its stack printed only with
 * INTUITOR_DEBUG=1.
 */
import { Command, CommanderError, Option } from 'commander';
import { getSystemErrorMap } from 'node:util';
import { GRPO_DEFAULTS } from '../rl/config.js';
import { IntuitorError, InvalidArgumentError, FileFormatError } from '../errors.js';
import { PACKAGE_VERSION } from '../paths.js';
import { benchCommand } from './bench.js';
import { BUILD_BASE_DEFAULTS, buildBaseCommand } from './build-base.js';
import { FLEET_DEFAULTS, queueStatusCommand, workerCommand } from './fleet.js';
import { GENERATE_MAX_NEW_TOKENS, generateCommand } from './generate.js';
import { gradCommand } from './grad.js';
import { infoCommand } from './info.js';
import { logitsCommand } from './logits.js';
import { DEFAULT_JOBS } from './run-pool.js';
import { SHIPPED_BASE_MODEL, SHIPPED_BASE_TASK, MAIN_JOB_DEFAULTS, experimentRewardsCommand, runCommand } from './run.js';
import { throughputCommand } from './throughput.js';
import { SCORE_MAX_NEW_TOKENS, scoreCommand } from './score.js';
import { serveCommand } from './serve.js';
import { SCORE_COMPLETIONS_DEFAULTS, scoreCompletionsCommand } from './score-completions.js';
import { evalCommand, trainCommand, trainOptions } from './train.js';
import { API_KEY_ENV, RELOAD_KEY_ENV, SERVE_DEFAULTS } from '../serve/server.js';
import { sftCommand } from './sft.js';
import { statsCommand } from './stats.js';
import { tokenizeCommand } from './tokenize.js';

function program(): Command {
  const cli = new Command('intuitor')
    .description('Reinforcement learning of language models without external rewards, on WebGPU kernels')
    .version(PACKAGE_VERSION)
    .option('--verbose', "also print Dawn's harmless warnings (as INTUITOR_DEBUG=1 does)")
    // The GPU runtime reads the environment, so that library users get the same switch.
    .hook('preAction', (command) => {
      if (command.opts().verbose) process.env.INTUITOR_VERBOSE = '1';
    })
    .exitOverride()
    // Commander's own errors (unknown option, missing --logits, stray arguments) read like ours.
    .configureOutput({ outputError: (text, write) => write(`intuitor: ${text.replace(/\n\(Did you mean (.*)\?\)/, ' (did you mean $1?)')}`) })
    // A mistyped command must not silently run the default (heavy) `run` job.
    .allowExcessArguments(false)
    // `intuitor trian` reaches here as the default command with 'trian' as its first word: it is a
    // command name mistyped, and commander suggests the nearest of the registered commands.
    .hook('preSubcommand', (command, subcommand) => {
      const first = command.args[0];
      // unknownCommand is commander's own (untyped) error for a word that names no command.
      if (first !== undefined && !first.startsWith('-') && first !== subcommand.name()) (command as unknown as { unknownCommand(): never }).unknownCommand();
    });

  // The main job and the reward experiment: the same options, the shipped base model by default.
  const comparison = (parent: Command, name: string, description: string, isDefault = false) => trainOptions(parent.command(name, { isDefault })
    .description(`${description}. Takes train's options except --reward (each run has its own) and --data (a built-in --task only)`)
    .addOption(new Option('--model <dir>', 'base model folder').default(SHIPPED_BASE_MODEL, 'the shipped models/addition-modes-q'))
    .option('--task <name>', 'built-in task', SHIPPED_BASE_TASK)
    .option('--steps <n>', 'GRPO steps per run', MAIN_JOB_DEFAULTS.steps)
    .option('--group-size <n>', 'completions per prompt (G)', MAIN_JOB_DEFAULTS.groupSize)
    .option('--seed <n>', 'run seed (the same for every run)', '0')
    .option('--jobs <n>', 'runs trained at once, each in a process with its own GPU device', String(DEFAULT_JOBS))
    .option('--out <dir>', 'output folder (one subfolder per run)', `runs/intuitor-${name}`), MAIN_JOB_DEFAULTS.train);

  comparison(cli, 'run', 'the main job: INTUITOR (self-certainty, no labels) beside ground-truth GRPO from the shipped base model: held-out accuracy before/after, collapse monitors, plot', true)
    .action(runCommand);
  comparison(cli.command('experiment').description('experiments that compare training set-ups'), 'rewards',
    'ground-truth, self-certainty, random, format and incorrect rewards on every base (default: the three shipped), several seeds, one recipe: accuracy change, peak, label-free stops, mode share, monitor verdicts, plot')
    .option('--models <dirs>', 'comma-separated base model folders, each trained on the task of its base_model.json (default: models/addition-modes-q, models/addition-modes-l, models/addition-base)')
    .option('--seeds <n>', 'seeds per base and reward (--seed, --seed + 1, ...)', '3')
    .option('--collect', 'train nothing: tabulate the runs already finished in --out (seeds run by separate processes, or an experiment cut short)')
    .option('--quick', 'a tiny budget (2 steps of 2 prompts × G = 2, 8 held-out prompts): checks that every run works; its numbers mean nothing')
    .action(experimentRewardsCommand);

  cli.command('train')
    .description('GRPO with any reward: INTUITOR (self-certainty), a verifier, spurious rewards, or your own module; checkpoints, metrics, plot')
    .requiredOption('--model <dir>', 'Hugging Face model folder to start from')
    .option('--task <name>', 'built-in task: addition | arithmetic | countdown | permutations (or math with --data)')
    .option('--data <file>', 'JSON lines of {"prompt", "answer"} (the last tenth is held out)')
    .requiredOption('--reward <spec>', 'rewards "name[:weight],...": self-certainty, accuracy, format, random, incorrect, contrastive-self-certainty, logprob, neg-entropy, or ./module.mjs')
    .requiredOption('--out <dir>', 'output folder: checkpoint-<step>/, metrics.jsonl, metrics.csv, plot.svg')
    .option('--steps <n>', 'GRPO steps', String(GRPO_DEFAULTS.steps))
    .option('--group-size <n>', 'completions per prompt (G ≥ 2)', String(GRPO_DEFAULTS.groupSize))
    .option('--seed <n>', 'run seed', String(GRPO_DEFAULTS.seed));
  trainOptions(cli.commands.at(-1)!).action(trainCommand);

  cli.command('build-base')
    .description('rebuild the shipped base model: a tiny Qwen2 character-level model, random init, SFT on a task\'s train split; records its held-out accuracy')
    .option('--task <name>', 'addition | arithmetic | addition-modes', SHIPPED_BASE_TASK)
    .option('--out <dir>', 'model folder to write (replaced whole; default models/<task>-base)')
    .option('--scratch-share <p>', 'addition-modes: fraction of SFT examples answered in the scratch mode, in [0, 1] (default 0.45)')
    .option('--direct-noise <p>', 'addition-modes: fraction of direct-mode SFT answers off by ±1 or ±10, in [0, 1] (default 0.3)')
    .option('--steps <n>', 'SFT updates (default 2500; addition-modes 1900)')
    .option('--lr <x>', 'SFT peak learning rate (default 1e-3; addition-modes 2e-3)')
    .option('--seed <n>', 'initialisation and data seed', BUILD_BASE_DEFAULTS.seed)
    .action(buildBaseCommand);

  cli.command('eval')
    .description("held-out evaluation on a built-in task: greedy pass@1, mean@k, and the exploration scores where the task has them")
    .requiredOption('--model <dir>', 'Hugging Face model folder')
    .requiredOption('--task <name>', 'addition | arithmetic | countdown | permutations')
    .option('--n <k>', 'samples per prompt for mean@k (0: greedy only)', '0')
    .option('--prompts <n>', 'held-out prompts', '128')
    .option('--max-new-tokens <n>', 'longest completion', '16')
    .option('--temperature <t>', 'sampling temperature of mean@k', '1')
    .option('--seed <n>', 'seed of the held-out split and the samples', '0')
    .option('--json', 'print JSON')
    .action(evalCommand);

  cli.command('score')
    .description('best-of-N selection: N samples per prompt scored by self-certainty and log-prob; picks by self-certainty, logprob, majority or Borda voting')
    .requiredOption('--model <dir>', 'Hugging Face model folder')
    .requiredOption('--prompts <file>', 'JSON lines of {"prompt"[, "answer"]}')
    .option('--n <n>', 'candidates per prompt', '8')
    .option('--select <rule>', 'self-certainty | logprob | majority | borda', 'borda')
    .option('--task <name>', 'built-in task whose answer format and verifier apply (default: free-form math)')
    .option('--temperature <t>', 'sampling temperature', '1')
    .option('--max-new-tokens <n>', `longest completion (default: ${SCORE_MAX_NEW_TOKENS}, or the positions the model has left after the longest prompt if fewer)`)
    .option('--seed <n>', 'sampling seed', '0')
    .option('--out <file>', 'where the scored candidates go (default: PROMPTS.scored.jsonl)')
    .action(scoreCommand);

  cli.command('serve')
    .description('a scoring server: POST /score, /get_reward (OpenRLHF remote reward model), /reload; GET /health, /metrics; requests merged into GPU batches')
    .requiredOption('--model <dir>', 'Hugging Face model folder to serve')
    .option('--host <address>', 'address to bind (loopback by default)', SERVE_DEFAULTS.host)
    .option('--port <n>', 'port (0: any free one)', String(SERVE_DEFAULTS.port))
    .option('--api-key <key>', `require "Authorization: Bearer <key>" on every request (or set ${API_KEY_ENV}, which keeps it out of the process list)`)
    .option('--allow-reload', 'enable POST /reload {"model": DIR} for folders under --models-root (needs --reload-key)')
    .option('--reload-key <key>', `require "Authorization: Bearer <key>" on /reload, which loads files and weights (or set ${RELOAD_KEY_ENV})`)
    .option('--models-root <dir>', 'the folder whose subfolders /reload may load')
    .option('--reward <name>', '/get_reward\'s reward: self-certainty | logprob | neg-entropy (means over the response tokens)', SERVE_DEFAULTS.reward)
    .option('--temperature <t>', 'statistics of z / T, for every request', String(SERVE_DEFAULTS.temperature))
    .option('--max-batch-tokens <n>', 'tokens (prompt + completion) merged into one GPU batch, and rows per forward pass', String(SERVE_DEFAULTS.maxBatchTokens))
    .option('--max-wait-ms <ms>', 'longest an idle server waits for more requests to join a batch', String(SERVE_DEFAULTS.maxWaitMs))
    .option('--max-queue <n>', 'items waiting for the GPU at most; more get 503 with Retry-After', String(SERVE_DEFAULTS.maxQueue))
    .option('--body-limit <bytes>', 'largest request body; larger get 413', String(SERVE_DEFAULTS.bodyLimit))
    .option('--weights <how>', 'as-stored (16-bit stays 16-bit) or f32 (upcast on load)', 'as-stored')
    .action(serveCommand);

  cli.command('worker')
    .description('a scoring fleet worker (one per GPU): takes score jobs from a Redis queue (BullMQ), refuses jobs made for another model, reports tokens/s; SIGTERM finishes the current job and exits')
    .requiredOption('--queue <url>', 'Redis URL: redis://[user:password@]host[:port][/db], or rediss:// for TLS')
    .requiredOption('--model <dir>', 'Hugging Face model folder (the producer must name the same files)')
    .option('--queue-name <name>', 'the queue (one per fleet)', FLEET_DEFAULTS.queueName)
    .option('--name <id>', "this worker's name in queue status (default: host-pid)")
    .option('--weights <how>', 'as-stored (16-bit stays 16-bit) or f32 (upcast on load); jobs must ask for the same', FLEET_DEFAULTS.weights)
    .option('--max-tokens-per-pass <n>', 'token rows per forward', FLEET_DEFAULTS.maxTokensPerPass)
    .option('--lock-duration <ms>', "a job's lock: a worker silent this long loses its job to another", FLEET_DEFAULTS.lockDuration)
    .option('--metrics-port <port>', "serve Prometheus metrics (serve's, per job) at http://HOST:PORT/metrics (0: any free port)")
    .option('--metrics-host <host>', 'the metrics address (loopback unless told otherwise)', FLEET_DEFAULTS.metricsHost)
    .action(workerCommand);

  cli.command('queue').description("a scoring fleet's queue")
    .command('status')
    .description('jobs waiting, active, done and failed; the workers with their adapters and tokens/s; the ETA')
    .requiredOption('--queue <url>', 'Redis URL: redis://[user:password@]host[:port][/db], or rediss:// for TLS')
    .option('--queue-name <name>', 'the queue', FLEET_DEFAULTS.queueName)
    .option('--json', 'print JSON')
    .action(queueStatusCommand);

  cli.command('throughput')
    .description('token statistics of a built-in batch on every available backend, with throughput')
    .option('--rows <n>', 'rows of the built-in batch', '256')
    .option('--vocab <v>', 'vocabulary size (Qwen2.5: 151936)', '151936')
    .option('--repeats <n>', 'timed repetitions per backend', '5')
    .action(throughputCommand);

  cli.command('info')
    .description("the adapters Dawn sees, the chosen one with its limits and features, and the native addon's status")
    .option('--json', 'print JSON')
    .action(infoCommand);

  cli.command('stats')
    .description('per-row self-certainty, entropy, logsumexp and (with --ids) log-prob of a logits file')
    .requiredOption('--logits <file>', 'logits (..., V): .npy (float32/float16/float64; uint16 with --dtype bf16) or .safetensors')
    .option('--ids <file>', 'chosen ids (...): .npy of int32, int64 or uint32')
    .option('--temperature <t>', 'statistics of z / T', '1')
    .option('--backend <name>', 'auto | webgpu | native | js', 'auto')
    .option('--dtype <dtype>', 'logits dtype: f32 | f16 | bf16 (needed for uint16 .npy)')
    .option('--tensor <name>', 'tensor name inside a .safetensors file')
    .option('--out <dir>', 'write self_certainty.npy, entropy.npy, logsumexp.npy [, logprob.npy] here')
    .option('--json', 'print the results as JSON instead of writing files')
    .action(statsCommand);
  cli.command('score-completions')
    .description('self-certainty, log-probs and entropy of existing completions: JSON lines in ({"prompt", "completion"}, {"messages"} or {"prompt_ids", "completion_ids"}), one record per line out, in input order; streams, resumable')
    .requiredOption('--model <dir>', 'Hugging Face model folder')
    .requiredOption('--input <file>', 'JSON lines to score')
    .requiredOption('--out <file>', 'JSON lines written: {"id", "line", "tokens", "self_certainty", "logprob_sum", "logprob_mean", "entropy"} (must not exist, unless --resume)')
    .option('--per-token', 'also write token_logprobs, token_self_certainty and token_entropy')
    .option('--temperature <t>', 'statistics of z / T', SCORE_COMPLETIONS_DEFAULTS.temperature)
    .option('--resume', 'continue --out after its last whole record (a torn last line is cut)')
    .option('--strict', 'stop at the first bad line (default: report it, skip it, exit 2 at the end)')
    .option('--json', 'print the summary as JSON on stdout')
    .option('--max-tokens-per-pass <n>', 'token rows per forward pass (lowered to what the adapter allows)', SCORE_COMPLETIONS_DEFAULTS.maxTokensPerPass)
    .option('--chunk-lines <n>', 'input lines per chunk (packed into passes together)', SCORE_COMPLETIONS_DEFAULTS.chunkLines)
    .option('--weights <how>', 'as-stored (16-bit stays 16-bit) or f32 (upcast on load)', SCORE_COMPLETIONS_DEFAULTS.weights)
    .option('--queue <url>', 'score on a fleet of `intuitor worker`s through this Redis: redis://[user:password@]host[:port][/db], or rediss:// for TLS')
    .option('--queue-name <name>', "with --queue: the fleet's queue", SCORE_COMPLETIONS_DEFAULTS.queueName)
    .option('--in-flight <n>', 'with --queue: chunks enqueued and awaited at once (keep it above the number of workers)', SCORE_COMPLETIONS_DEFAULTS.inFlight)
    .action(scoreCompletionsCommand);
  cli.command('logits')
    .description("the policy's logits (B, T, V) for token ids (B, T), on WebGPU")
    .requiredOption('--model <dir>', 'Hugging Face model folder (config.json, model.safetensors or shards)')
    .requiredOption('--ids <file>', 'token ids (B, T): .npy of int32 or int64')
    .requiredOption('--out <dir>', 'writes logits.npy (float32) here')
    .option('--weights <how>', 'as-stored (16-bit stays 16-bit) or f32 (upcast on load)', 'as-stored')
    .action(logitsCommand);

  cli.command('grad')
    .description('d(mean next-token cross-entropy over the batch)/d(parameter) for every parameter, float32, Hugging Face names')
    .requiredOption('--model <dir>', 'Hugging Face model folder (16-bit weights are upcast to f32)')
    .requiredOption('--ids <file>', 'token ids (B, T): .npy of int32 or int64, T ≥ 2')
    .requiredOption('--out <file>', 'writes the gradients here as .safetensors')
    .action(gradCommand);

  cli.command('sft')
    .description('supervised fine-tuning on {"prompt", "completion"} JSON lines: loss on completion tokens only, checkpoints, metrics')
    .requiredOption('--model <dir>', 'Hugging Face model folder to start from')
    .requiredOption('--data <file>', 'JSON lines of {"prompt": ..., "completion": ...}')
    .requiredOption('--out <dir>', 'output folder: checkpoint-<step>/, latest.json, metrics.jsonl, metrics.csv')
    .option('--steps <n>', 'optimiser updates', '100')
    .option('--lr <x>', 'peak learning rate', '1e-4')
    .option('--batch-size <n>', 'examples per micro-batch', '8')
    .option('--grad-accum <n>', 'micro-batches per update', '1')
    .option('--schedule <name>', 'constant | cosine (after linear warmup)', 'constant')
    .option('--warmup-steps <n>', 'linear warmup updates', '0')
    .option('--max-grad-norm <x>', 'clip the global gradient norm (0: off)', '1')
    .option('--weight-decay <x>', 'AdamW decoupled weight decay (matrices only)', '0')
    .option('--seed <n>', 'data order seed', '0')
    .option('--save-every <n>', 'checkpoint every n updates (0: only at the end)', '0')
    .option('--keep <n>', 'checkpoints kept', '2')
    .option('--max-length <n>', 'longest prompt + completion + EOS in tokens (default: the model limit)')
    .option('--resume', 'continue from the latest checkpoint in --out')
    .option('--overwrite', 'remove a non-empty --out first (without it or --resume, such a folder is refused)')
    .action(sftCommand);

  cli.command('generate')
    .description('a continuation of a prompt (batched prefill, then KV-cache decoding; tokens picked on WebGPU)')
    .requiredOption('--model <dir>', 'Hugging Face model folder')
    .requiredOption('--prompt <text>', 'the prompt (encoded without special tokens)')
    .option('--max-new-tokens <n>', `stop after this many new tokens, or at EOS (default: ${GENERATE_MAX_NEW_TOKENS}, or the positions the model has left after the prompt if fewer)`)
    .option('--greedy', 'greedy decoding (the most likely token each step)')
    .option('--temperature <t>', 'sample from softmax(z / t) (0 = greedy)')
    .option('--top-k <k>', 'keep the k most likely tokens (0 = off)')
    .option('--top-p <p>', 'keep the smallest set with mass ≥ p (1 = off)')
    .option('--min-p <p>', 'keep tokens with p ≥ min-p · p_max (0 = off)')
    .option('--seed <n>', 'sampling seed', '0')
    .option('--weights <how>', 'as-stored (16-bit stays 16-bit) or f32 (upcast on load)', 'as-stored')
    .option('--json', 'print {"prompt_ids", "new_ids", "text", "mean_logprob", "mean_self_certainty"}')
    .action(generateCommand);

  cli.command('tokenize')
    .description("token ids of a text with a Hugging Face model folder's tokenizer (or, with --ids, the text of ids)")
    .requiredOption('--model <dir>', 'model folder with tokenizer.json (and tokenizer_config.json)')
    .option('--text <text>', 'text to encode (no special tokens are added)')
    .option('--ids <list>', 'token ids to decode, separated by commas or spaces')
    .option('--json', 'print {"ids": [...]} or {"text": "..."}')
    .action(tokenizeCommand);

  cli.command('bench')
    .description("kernel benchmarks: every backend, the machine's ceilings measured in the same run, ratios to peers")
    .option('--kernels <list>', 'token_stats_forward,token_stats_backward,linear,linear_decode,attention,lm_head_stats,train_step,decode,score_completions,serve (default: all)')
    .option('--backends <list>', 'webgpu,native,js,gpujs (default: all)')
    .option('--quick', 'small sizes and few samples (about a minute on 2 cores)')
    .option('--rows <list>', 'rows N per case (default 8,256,2048; quick 8,256)')
    .option('--dtypes <list>', 'f32,f16,bf16 (default f32,bf16; quick f32)')
    .option('--min-chunks <list>', 'also time the WebGPU kernels with these chunk floors (tuning)')
    .option('--peers <file>', 'merge PyTorch rows from bench/peers/torch_token_stats.py run on the same card')
    .option('--json <file>', 'write the report as JSON (bench/results/ keeps versioned ones)')
    .option('--markdown <file>', 'write the Markdown report (a table per kernel)')
    .option('--chart <file.svg>', 'write a roofline-style chart of the fraction of each ceiling reached')
    .option('--profile', "with train_step and decode: each kernel's share of the GPU time of a training step and of a decode step")
    .action(benchCommand);
  return cli;
}

/** What a system call on a path was doing, for the error line. */
const SYSCALL_WORDS: Record<string, string> = {
  open: 'cannot open', mkdir: 'cannot create the folder', rmdir: 'cannot remove the folder', rm: 'cannot remove', unlink: 'cannot remove',
  scandir: 'cannot list the folder', opendir: 'cannot list the folder', stat: 'cannot read', lstat: 'cannot read', read: 'cannot read',
  write: 'cannot write', rename: 'cannot rename', copyfile: 'cannot copy', cp: 'cannot copy', access: 'cannot access', chmod: 'cannot change the mode of',
  symlink: 'cannot link', link: 'cannot link', readlink: 'cannot read the link', realpath: 'cannot resolve', utime: 'cannot set the times of',
};

/** A Node system error about a file: EEXIST, EISDIR, ENOENT, EACCES, ENOSPC, ... with the path it concerns. */
interface SystemPathError extends Error {
  code: string;
  path: string;
  errno?: number;
  syscall?: string;
  dest?: string;
}

// Duck-typed, not `instanceof Error`: errors from another realm (a vm context, a worker) count too.
function isSystemPathError(err: unknown): err is SystemPathError {
  const e = err as Partial<SystemPathError> | null;
  return typeof e === 'object' && e !== null && typeof e.code === 'string' && /^E[A-Z0-9]+$/.test(e.code) && typeof e.path === 'string';
}

function errorText(err: unknown): { message: string; stack?: string } {
  const e = err as { message?: unknown; stack?: unknown } | null;
  if (typeof e !== 'object' || e === null || typeof e.message !== 'string') return { message: String(err) };
  return { message: e.message, stack: typeof e.stack === 'string' ? e.stack : undefined };
}

/** The one stderr line (without "intuitor: error: ") and the exit status of a failure. */
export function describeFailure(err: unknown, debug = false): { message: string; exitCode: number; stack?: string } {
  if (err instanceof InvalidArgumentError || err instanceof FileFormatError) {
    // Under debugging, the stack of what caused it (a user's reward module that threw) or its own.
    const cause = (err.cause as { stack?: unknown } | undefined)?.stack;
    return { message: err.message, exitCode: 2, ...(debug ? { stack: typeof cause === 'string' ? cause : err.stack } : {}) };
  }
  if (err instanceof IntuitorError) return { message: err.message, exitCode: 1 };
  const { message, stack: fullStack } = errorText(err);
  const stack = debug ? fullStack : undefined;
  if (isSystemPathError(err)) {
    // libuv's wording ("file already exists", "no space left on device"), else the code itself.
    const words = (err.errno === undefined ? undefined : getSystemErrorMap().get(err.errno)?.[1]) ?? err.code;
    const action = err.syscall === undefined ? '' : `${SYSCALL_WORDS[err.syscall] ?? `${err.syscall} failed`}${err.dest === undefined ? '' : ` to ${err.dest}`}: `;
    return { message: `${err.path}: ${action}${words} (${err.code})`, exitCode: 2, stack };
  }
  return { message: `internal error: ${message}${debug ? '' : ' (set INTUITOR_DEBUG=1 for the stack)'}`, exitCode: 1, stack };
}

/** Library option names whose CLI option is named differently. */
const OPTION_OF_LIBRARY_NAME: Record<string, string> = { rewards: 'reward', maxNewTokens: 'maxCompletionLength' };

/**
 * A library error names the option as the library calls it (maxPromptLength); the user typed a
 * flag (--max-prompt-length). Renames the argument to the flag of the running command, if it has one.
 */
export function inFlagTerms(err: unknown, command: Command | undefined): unknown {
  if (!(err instanceof InvalidArgumentError) || command === undefined) return err;
  // The argument is a name, or a name and a detail ("rewards: weight of 'accuracy'").
  const [, name, detail] = /^([A-Za-z]+)(:.*)?$/s.exec(err.argument) ?? [];
  if (name === undefined) return err;
  const option = command.options.find((o) => o.attributeName() === name)
    ?? command.options.find((o) => o.attributeName() === OPTION_OF_LIBRARY_NAME[name]);
  return option?.long === undefined ? err : err.renamed(`${option.long}${detail ?? ''}`);
}

export async function main(argv: string[]): Promise<void> {
  let running: Command | undefined;
  try {
    await program().hook('preAction', (_, actionCommand) => {
      running = actionCommand;
    }).parseAsync(argv);
  } catch (caught) {
    if (caught instanceof CommanderError) {
      process.exitCode = caught.exitCode === 0 ? 0 : 2;
      return;
    }
    const err = inFlagTerms(caught, running);
    const { message, exitCode, stack } = describeFailure(err, process.env.INTUITOR_DEBUG === '1');
    // One line: a message with line breaks (a parser's excerpt, a native error) is folded.
    process.stderr.write(`intuitor: error: ${message.replace(/\s*\n\s*/g, ' ')}\n${stack === undefined ? '' : `${stack}\n`}`);
    process.exitCode = exitCode;
  }
}
