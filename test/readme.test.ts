/**
 * The README's Library snippets, run as written: each ```ts block of the "Library" section is
 * taken from README.md, its `import ... from 'intuitor'` bound to this build, and its free
 * variables (the user's tensors) given values. The results are checked against the float64
 * reference, so a snippet that runs but computes the wrong thing fails here.
 */
import { readFileSync } from 'node:fs';
import * as intuitor from '../src/index.js';
import { referenceBackward, referenceForward } from '../src/ops/token-stats/reference.js';
import { resolveGrpoConfig, type GrpoConfigInput } from '../src/rl/config.js';
import { mulberry32 } from '../src/util/random.js';
import { describeGpu } from './helpers.js';
import { TOLERANCES, expectClose } from './tolerances.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** The ```ts blocks of the README's "## Library" section, in order. */
function librarySnippets(): string[] {
  const section = README.slice(README.indexOf('\n## Library\n'), README.indexOf('\n## Training\n'));
  return [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

type Scope = Record<string, unknown>;
const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as new (...args: string[]) => (...values: unknown[]) => Promise<Scope>;

/** Runs a snippet with `library` as 'intuitor' and `scope` as its free variables; returns the named locals. */
async function runSnippet(code: string, library: Scope, scope: Scope, results: string[]): Promise<Scope> {
  const body = code.replace(/^import \{([^}]*)\} from 'intuitor';$/m, 'const {$1} = __intuitor;');
  expect(body).not.toContain("from 'intuitor'");
  const run = new AsyncFunction('__intuitor', ...Object.keys(scope), `${body}\nreturn { ${results.join(', ')} };`);
  return run(library, ...Object.values(scope));
}

const random = mulberry32(7);
const uniform = (n: number, lo: number, hi: number) => Float32Array.from({ length: n }, () => lo + (hi - lo) * random());

test('the README has the token-statistics and the GRPO snippets', () => {
  const snippets = librarySnippets();
  expect(snippets).toHaveLength(2);
  expect(snippets[0]).toContain('tokenStatsBackward');
  expect(snippets[1]).toContain('grpoLoss');
});

describeGpu('README: token statistics and their backward', () => {
  test('the backward of the T = 0.7 forward matches the float64 reference, each row of dz summing to 0', async () => {
    const [B, T, V] = [2, 3, 37];
    const rows = B * T;
    const logits = uniform(rows * V, -4, 4);
    const ids = Int32Array.from({ length: rows }, () => Math.floor(random() * V));
    const gLogprob = uniform(rows, -1, 1);
    const gSelfCertainty = uniform(rows, -1, 1);
    const { s, dz } = await runSnippet(librarySnippets()[0]!, intuitor as unknown as Scope, { logits, ids, B, T, V, gLogprob, gSelfCertainty }, ['s', 'dz']) as
      { s: intuitor.TokenStats; dz: Float32Array };

    const temperature = 0.7;
    const want = referenceForward('f32', logits, rows, V, ids, temperature);
    expectClose('selfCertainty', s.selfCertainty, want.selfCertainty, TOLERANCES.tokenStatsForward);
    expect(s.validCount).toBeInstanceOf(Uint32Array);
    expectClose('dz', dz, referenceBackward('f32', logits, rows, V, ids, temperature, want.logsumexp, want.validCount, gLogprob, gSelfCertainty), TOLERANCES.tokenStatsBackward);
    for (let r = 0; r < rows; r++) expect(Math.abs(dz.subarray(r * V, (r + 1) * V).reduce((a, b) => a + b, 0))).toBeLessThan(1e-5);
  });
});

test('README: the GRPO pieces, and runGrpo called with a config that resolves', async () => {
  const rows = 16;
  const width = 4;
  const logprobs = uniform(rows * width, -3, -0.1);
  const scope = {
    rewards: uniform(rows, 0, 1), logprobs, oldLogprobs: logprobs.map((x) => x - 0.01), refLogprobs: logprobs.map((x) => x + 0.02),
    mask: new Float32Array(rows * width).fill(1),
  };
  let config: GrpoConfigInput | undefined;
  // Training 60 steps is the trainer suite's business: here runGrpo only checks the snippet's options.
  const runGrpo = async (ctx: intuitor.GpuContext, input: GrpoConfigInput) => {
    expect(ctx).toBeInstanceOf(intuitor.GpuContext);
    resolveGrpoConfig(input);
    config = input;
    return { before: { pass1: 0.5 }, after: { pass1: 0.6 }, verdict: 'stable' };
  };
  const { advantages, loss, gradLogprobs, metrics } = await runSnippet(librarySnippets()[1]!, { ...intuitor, runGrpo } as Scope, scope,
    ['advantages', 'loss', 'gradLogprobs', 'metrics']) as { advantages: Float32Array; loss: number; gradLogprobs: Float64Array; metrics: object };
  expect(advantages).toHaveLength(rows);
  expect(Number.isFinite(loss)).toBe(true);
  expect(gradLogprobs).toHaveLength(rows * width);
  expect(metrics).toHaveProperty('klMean');
  expect(config).toMatchObject({ model: 'models/addition-base', task: 'addition', rewards: 'self-certainty' });
});
