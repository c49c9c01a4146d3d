/**
 * The command line, run as users run it: `node bin/intuitor.js ...` in a child process.
 * Inputs are written to a temporary directory; outputs are read back and checked against the
 * Hugging Face fixture and the float64 reference. Bad input must exit 2 with one
 * "intuitor: error:" line naming the argument or file, what was expected and what came, and must
 * write nothing.
 *
 * Child processes run at most two at a time; suites start theirs in beforeAll and each test
 * awaits its own. `--backend native` keeps runs fast (js when INTUITOR_SKIP_NATIVE=1); one
 * fixture run uses webgpu unless INTUITOR_SKIP_GPU=1.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DType, HostArray } from '../../src/dtype.js';
import { encodeNpy, readNpy, writeNpy } from '../../src/io/npy.js';
import { writeSafetensors } from '../../src/io/safetensors.js';
import type { HostTensor } from '../../src/io/tensor.js';
import { referenceForward } from '../../src/ops/token-stats/reference.js';
import { FIXTURES, SKIP_GPU, SKIP_NATIVE, fixtureNextToken, makeLogits } from '../helpers.js';
import { cli, expectSuccess, type CliResult } from './run-cli.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const FAST = SKIP_NATIVE ? 'js' : 'native';

interface StatsJson {
  backend: string;
  dtype: string;
  shape: number[];
  temperature: number;
  selfCertainty: (number | string)[];
  entropy: (number | string)[];
  logsumexp: (number | string)[];
  logprob: (number | string)[] | null;
}

function parseStats(r: CliResult): StatsJson {
  expectSuccess(r);
  const lines = r.stdout.trim().split('\n');
  expect(lines).toHaveLength(1);
  return JSON.parse(lines[0]!) as StatsJson;
}

/** JSON writes NaN and ±Infinity as strings. */
function numbers(values: (number | string)[]): Float64Array {
  return Float64Array.from(values, (v) => (typeof v === 'number' ? v : Number(v)));
}

// ---------------------------------------------------------------------------------------------
// Inputs

let tmp: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'intuitor-cli-'));
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function path(...parts: string[]): string {
  return join(tmp, ...parts);
}

/** Writes a .npy with the given data; bf16 bit patterns are written as '<u2', as numpy would hold them. */
async function npy(name: string, tensor: HostTensor): Promise<string> {
  const file = path('inputs', name);
  mkdirSync(path('inputs'), { recursive: true });
  await writeNpy(file, tensor);
  return file;
}

/** The tiny-qwen2 next-token problem: logits[:, :-1] (float32) and ids = input_ids[:, 1:] (int64). */
interface Fixture {
  logitsPath: string;
  idsPath: string;
  logits: Float32Array;
  ids: Int32Array;
  rows: number;
  vocab: number;
  shape: number[];
  refSelfCertainty: Float64Array;
  refEntropy: Float64Array;
  refLogprob: Float64Array;
}

let fixturePromise: Promise<Fixture> | undefined;

function fixture(): Promise<Fixture> {
  fixturePromise ??= (async () => {
    const dir = join(FIXTURES, 'tiny-qwen2');
    const logits64 = await readNpy(join(dir, 'ref_logits_f64.npy'));
    const inputIds = await readNpy(join(dir, 'ref_input_ids.npy'));
    expect(logits64.dtype).toBe('f64');
    const [batch, time, vocab] = logits64.shape as [number, number, number];
    expect(inputIds.shape).toEqual([batch, time]);
    const rows = batch * (time - 1);
    const { logits, ids, shape } = fixtureNextToken(logits64 as { shape: number[]; data: Float64Array }, inputIds.data as ArrayLike<number | bigint>);
    const logitsPath = await npy('fixture_logits.npy', { dtype: 'f32', shape, data: logits });
    const idsPath = await npy('fixture_ids.npy', { dtype: 'i64', shape: [batch, time - 1], data: BigInt64Array.from(ids, BigInt) });
    const ref = async (name: string) => (await readNpy(join(dir, name))).data as Float64Array;
    return {
      logitsPath, idsPath, logits, ids, rows, vocab, shape,
      refSelfCertainty: await ref('ref_self_certainty.npy'),
      refEntropy: await ref('ref_entropy.npy'),
      refLogprob: await ref('ref_next_logprob.npy'),
    };
  })();
  return fixturePromise;
}

// ---------------------------------------------------------------------------------------------

describe('intuitor stats on the Hugging Face fixture (tiny-qwen2)', () => {
  const backends = [FAST, ...(SKIP_GPU ? [] : ['webgpu'])];

  test('the fixture has the expected shape (4, 23, 384)', async () => {
    const f = await fixture();
    expect(f.shape).toEqual([4, 23, 384]);
  });

  test.each(backends)('--out writes float32 (4, 23) .npy files matching the fixture (--backend %s)', async (backend) => {
    const f = await fixture();
    const out = path(`fixture-${backend}`, 'nested', 'out');
    const r = await cli(['stats', '--logits', f.logitsPath, '--ids', f.idsPath, '--out', out, '--backend', backend]);
    expectSuccess(r);
    expect(r.stdout).toBe('');
    expect(r.messages).toHaveLength(1);
    expect(r.messages[0]).toMatch(new RegExp(`^intuitor stats: ${backend}, 92 rows of V=384 \\(f32\\)`));
    expect(readdirSync(out).sort()).toEqual(['entropy.npy', 'logprob.npy', 'logsumexp.npy', 'self_certainty.npy']);

    const read = async (name: string) => {
      const t = await readNpy(join(out, name));
      expect({ name, dtype: t.dtype, shape: t.shape }).toEqual({ name, dtype: 'f32', shape: [4, 23] });
      return t.data as Float32Array;
    };
    expectClose('self_certainty.npy', await read('self_certainty.npy'), f.refSelfCertainty, TOLERANCES.fixture);
    expectClose('entropy.npy', await read('entropy.npy'), f.refEntropy, TOLERANCES.fixture);
    expectClose('logprob.npy', await read('logprob.npy'), f.refLogprob, TOLERANCES.fixture);
    const want = referenceForward('f32', f.logits, f.rows, f.vocab, f.ids, 1);
    expectClose('logsumexp.npy', await read('logsumexp.npy'), want.logsumexp, TOLERANCES.tokenStatsForward);
  });

  test('without --ids no logprob.npy is written', async () => {
    const f = await fixture();
    const out = path('fixture-no-ids');
    expectSuccess(await cli(['stats', '--logits', f.logitsPath, '--out', out, '--backend', FAST]));
    expect(readdirSync(out).sort()).toEqual(['entropy.npy', 'logsumexp.npy', 'self_certainty.npy']);
  });
});

describe('intuitor stats --backend auto (the default)', () => {
  test('runs on webgpu where Dawn finds an adapter, and on native where it finds none', async () => {
    const f = await fixture();
    const args = ['stats', '--logits', f.logitsPath, '--ids', f.idsPath, '--json'];
    // A Vulkan loader pointed at no driver: Dawn sees no adapter at all.
    const [found, none] = await Promise.all([cli(args), cli([...args, '--backend', 'auto'], undefined, undefined, { VK_ICD_FILENAMES: '/nonexistent/icd.json' })]);
    const chosen = parseStats(found).backend;
    if (!SKIP_GPU) expect(chosen).toBe('webgpu');
    const fallback = parseStats(none);
    expect(fallback.backend).toBe(SKIP_NATIVE ? 'js' : 'native');
    expectClose('selfCertainty', numbers(fallback.selfCertainty), f.refSelfCertainty, TOLERANCES.fixture);
  });
});

describe('intuitor stats --json', () => {
  let results: Promise<[CliResult, CliResult, CliResult]>;
  beforeAll(() => {
    results = fixture().then((f) => Promise.all([
      cli(['stats', '--logits', f.logitsPath, '--ids', f.idsPath, '--json', '--backend', FAST]),
      cli(['stats', '--logits', f.logitsPath, '--ids', f.idsPath, '--json', '--backend', FAST, '--temperature', '0.7']),
      cli(['stats', '--logits', f.logitsPath, '--json', '--backend', FAST]),
    ]));
  });

  test('prints one JSON object with per-row statistics matching the fixture', async () => {
    const f = await fixture();
    const j = parseStats((await results)[0]);
    expect({ backend: j.backend, dtype: j.dtype, shape: j.shape, temperature: j.temperature })
      .toEqual({ backend: FAST, dtype: 'f32', shape: [4, 23], temperature: 1 });
    for (const key of ['selfCertainty', 'entropy', 'logsumexp', 'logprob'] as const) {
      expect(j[key]).toHaveLength(92);
      expect(j[key]!.every((v) => typeof v === 'number')).toBe(true);
    }
    expectClose('selfCertainty', numbers(j.selfCertainty), f.refSelfCertainty, TOLERANCES.fixture);
    expectClose('entropy', numbers(j.entropy), f.refEntropy, TOLERANCES.fixture);
    expectClose('logprob', numbers(j.logprob!), f.refLogprob, TOLERANCES.fixture);
  });

  test('--temperature 0.7 gives the statistics of z / 0.7, sharper than at T = 1', async () => {
    const f = await fixture();
    const [r1, r07] = await results;
    const one = parseStats(r1);
    const cold = parseStats(r07);
    expect(cold.temperature).toBe(0.7);
    expect(cold.shape).toEqual([4, 23]);
    const want = referenceForward('f32', f.logits, f.rows, f.vocab, f.ids, 0.7);
    expectClose('selfCertainty', numbers(cold.selfCertainty), want.selfCertainty, TOLERANCES.tokenStatsForward);
    expectClose('entropy', numbers(cold.entropy), want.entropy, TOLERANCES.tokenStatsForward);
    expectClose('logsumexp', numbers(cold.logsumexp), want.logsumexp, TOLERANCES.tokenStatsForward);
    expectClose('logprob', numbers(cold.logprob!), want.logprob!, TOLERANCES.tokenStatsForward);
    // Entropy grows with T and self-certainty (KL(U‖p)) shrinks with it, row by row.
    const [h1, h07, sc1, sc07] = [one.entropy, cold.entropy, one.selfCertainty, cold.selfCertainty].map(numbers) as Float64Array[];
    let maxChange = 0;
    for (let r = 0; r < f.rows; r++) {
      expect(h07![r]!).toBeLessThanOrEqual(h1![r]! + 1e-5);
      expect(sc07![r]!).toBeGreaterThanOrEqual(sc1![r]! - 1e-5);
      maxChange = Math.max(maxChange, Math.abs(h07![r]! - h1![r]!));
    }
    expect(maxChange).toBeGreaterThan(1e-2);
  });

  test('without --ids, logprob is null', async () => {
    const j = parseStats((await results)[2]);
    expect(j.logprob).toBeNull();
    expect(j.selfCertainty).toHaveLength(92);
  });
});

describe('intuitor stats reads every logits dtype and container', () => {
  const rows = 6;
  const vocab = 50;
  const shape = [2, 3, vocab];
  interface Case {
    name: string;
    args: string[];
    /** dtype reported in the JSON and the storage the reference reads. */
    dtype: DType;
    storage: HostArray;
    ids: Int32Array;
  }
  const cases: Case[] = [];
  const runs = new Map<string, Promise<CliResult>>();

  beforeAll(async () => {
    const bf16 = makeLogits({ rows, vocab, dtype: 'bf16', seed: 11, masked: true, outliers: true });
    const f16 = makeLogits({ rows, vocab, dtype: 'f16', seed: 12, masked: true });
    const f32 = makeLogits({ rows, vocab, dtype: 'f32', seed: 13, masked: true, outliers: true });
    // float64 values that float32 cannot hold exactly: the CLI rounds them to float32.
    const f64 = Float64Array.from(f32.logits as Float32Array, (v, i) => v + ((i % 7) - 3) * 1e-9);
    const rowShape = shape.slice(0, -1);
    const i32 = (name: string, ids: Int32Array) => npy(name, { dtype: 'i32', shape: rowShape, data: ids });
    const i64 = (name: string, ids: Int32Array) => npy(name, { dtype: 'i64', shape: rowShape, data: BigInt64Array.from(ids, BigInt) });
    const u32 = (name: string, ids: Int32Array) => npy(name, { dtype: 'u32', shape: rowShape, data: Uint32Array.from(ids) });

    const safetensors = path('inputs', 'two-dtypes.safetensors');
    await writeSafetensors(safetensors, {
      'model.logits.f32': { dtype: 'f32', shape, data: f32.logits },
      'model.logits.bf16': { dtype: 'bf16', shape, data: bf16.logits },
    });
    const fast = ['--json', '--backend', FAST];
    cases.push(
      {
        name: 'bf16 bit patterns in a uint16 .npy with --dtype bf16',
        args: ['--logits', await npy('bf16_as_u16.npy', { dtype: 'u16', shape, data: bf16.logits }), '--dtype', 'bf16', '--ids', await i32('ids_bf16.npy', bf16.ids)],
        dtype: 'bf16', storage: bf16.logits, ids: bf16.ids,
      },
      {
        name: 'f16 bit patterns in a uint16 .npy with --dtype f16',
        args: ['--logits', await npy('f16_as_u16.npy', { dtype: 'u16', shape, data: f16.logits }), '--dtype', 'f16', '--ids', await i64('ids_f16.npy', f16.ids)],
        dtype: 'f16', storage: f16.logits, ids: f16.ids,
      },
      {
        name: "a float16 ('<f2') .npy",
        args: ['--logits', await npy('f16.npy', { dtype: 'f16', shape, data: f16.logits }), '--ids', await u32('ids_f16_u32.npy', f16.ids)],
        dtype: 'f16', storage: f16.logits, ids: f16.ids,
      },
      {
        name: 'a float32 .npy with an explicit --dtype f32',
        args: ['--logits', await npy('f32.npy', { dtype: 'f32', shape, data: f32.logits }), '--dtype', 'f32', '--ids', await i32('ids_f32.npy', f32.ids)],
        dtype: 'f32', storage: f32.logits, ids: f32.ids,
      },
      {
        name: 'a float64 .npy (rounded to float32)',
        args: ['--logits', await npy('f64.npy', { dtype: 'f64', shape, data: f64 }), '--ids', await i64('ids_f64.npy', f32.ids)],
        dtype: 'f32', storage: Float32Array.from(f64), ids: f32.ids,
      },
      {
        name: 'an F32 tensor of a .safetensors file (--tensor)',
        args: ['--logits', safetensors, '--tensor', 'model.logits.f32', '--ids', await i32('ids_st_f32.npy', f32.ids)],
        dtype: 'f32', storage: f32.logits, ids: f32.ids,
      },
      {
        name: 'a BF16 tensor of a .safetensors file (--tensor)',
        args: ['--logits', safetensors, '--tensor', 'model.logits.bf16', '--ids', await i32('ids_st_bf16.npy', bf16.ids)],
        dtype: 'bf16', storage: bf16.logits, ids: bf16.ids,
      },
    );
    const single = path('inputs', 'single.safetensors');
    await writeSafetensors(single, { only: { dtype: 'bf16', shape, data: bf16.logits } });
    cases.push({
      name: 'the only tensor of a .safetensors file, without --tensor',
      args: ['--logits', single, '--ids', await i32('ids_single.npy', bf16.ids)],
      dtype: 'bf16', storage: bf16.logits, ids: bf16.ids,
    });
    for (const c of cases) runs.set(c.name, cli(['stats', ...c.args, ...fast]));
  });

  const names = [
    'bf16 bit patterns in a uint16 .npy with --dtype bf16',
    'f16 bit patterns in a uint16 .npy with --dtype f16',
    "a float16 ('<f2') .npy",
    'a float32 .npy with an explicit --dtype f32',
    'a float64 .npy (rounded to float32)',
    'an F32 tensor of a .safetensors file (--tensor)',
    'a BF16 tensor of a .safetensors file (--tensor)',
    'the only tensor of a .safetensors file, without --tensor',
  ];
  test.each(names)('%s', async (name) => {
    const c = cases.find((x) => x.name === name)!;
    expect(c).toBeDefined();
    const j = parseStats(await runs.get(name)!);
    expect({ backend: j.backend, dtype: j.dtype, shape: j.shape }).toEqual({ backend: FAST, dtype: c.dtype, shape: [2, 3] });
    const want = referenceForward(c.dtype, c.storage, rows, vocab, c.ids, 1);
    expectClose(`${name}: selfCertainty`, numbers(j.selfCertainty), want.selfCertainty, TOLERANCES.tokenStatsForward);
    expectClose(`${name}: entropy`, numbers(j.entropy), want.entropy, TOLERANCES.tokenStatsForward);
    expectClose(`${name}: logsumexp`, numbers(j.logsumexp), want.logsumexp, TOLERANCES.tokenStatsForward);
    expectClose(`${name}: logprob`, numbers(j.logprob!), want.logprob!, TOLERANCES.tokenStatsForward);
  });
});

describe('intuitor info', () => {
  let text: Promise<CliResult>;
  let json: Promise<CliResult>;
  beforeAll(() => {
    text = cli(['info']);
    json = cli(['info', '--json']);
  });

  test('exits 0 and reports the adapters and the native backend', async () => {
    const r = await text;
    expectSuccess(r);
    expect(r.stdout).toContain('Adapters');
    expect(r.stdout).toContain('WebGPU backend');
    expect(r.stdout).toContain('Native backend');
    if (!SKIP_NATIVE) expect(r.stdout).toMatch(/Native backend:\n\s+loaded from /);
    if (!SKIP_GPU) {
      expect(r.stdout).toContain('chosen adapter:');
      expect(r.stdout).toMatch(/one storage binding holds \d+ MiB, one buffer \d+ MiB: a weight larger than \d+ MiB loads in row windows/);
    }
  });

  test("prints nothing to stderr: Dawn's harmless warnings are dropped, and shown with --verbose", async () => {
    const r = await text;
    expect(r.stderr).toBe('');
    expect((await json).stderr).toBe('');
    // Dawn prints its limit warnings on some adapters only (lavapipe); where it does, --verbose shows them.
    if (!SKIP_GPU && !SKIP_NATIVE && /llvmpipe/.test(r.stdout)) {
      expect((await cli(['info', '--verbose'])).stderr).toMatch(/^Warning: maxDynamic\w+ artificially reduced/m);
    }
  });

  test('--json parses', async () => {
    const r = await json;
    expectSuccess(r);
    const report = JSON.parse(r.stdout) as {
      version: string; node: string; adapters: unknown[]; webgpu: { available: boolean; windowBytes?: number; limits?: Record<string, number> }; native: { loaded: boolean };
    };
    expect(typeof report.version).toBe('string');
    expect(report.node).toBe(process.version);
    expect(Array.isArray(report.adapters)).toBe(true);
    expect(typeof report.webgpu.available).toBe('boolean');
    expect(typeof report.native.loaded).toBe('boolean');
    if (!SKIP_NATIVE) expect(report.native.loaded).toBe(true);
    if (!SKIP_GPU) {
      expect(report.webgpu.available).toBe(true);
      expect(report.adapters.length).toBeGreaterThan(0);
      expect(report.webgpu.windowBytes).toBe(Math.min(report.webgpu.limits!.maxStorageBufferBindingSize!, report.webgpu.limits!.maxBufferSize!));
    }
  });

  test('--version prints the version and exits 0', async () => {
    const r = await cli(['--version']);
    expectSuccess(r);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('bad input exits 2 with one line naming the argument, what was expected and what came, and writes nothing', () => {
  interface BadCase {
    name: string;
    args: (inputs: string) => string[];
    /** Each must match the error line: the argument or file, the expectation, what came. */
    expected: RegExp[];
  }
  const stats = (...args: string[]) => ['stats', ...args, '--backend', FAST];
  const cases: BadCase[] = [
    {
      name: 'an id >= V',
      args: (d) => stats('--logits', join(d, 'good.npy'), '--ids', join(d, 'ids_big.npy'), '--out', 'out'),
      expected: [/--ids/, /ids_big\.npy/, /\[0, 4\)/, /got 4 at flat index 2/],
    },
    {
      name: 'a negative id (int64)',
      args: (d) => stats('--logits', join(d, 'good.npy'), '--ids', join(d, 'ids_negative.npy'), '--out', 'out'),
      expected: [/--ids/, /ids_negative\.npy/, /\[0, 4\)/, /got -1 at flat index 1/],
    },
    {
      name: 'ids shaped unlike the rows',
      args: (d) => stats('--logits', join(d, 'good.npy'), '--ids', join(d, 'ids_short.npy'), '--out', 'out'),
      expected: [/--ids/, /expected shape \[3\]/, /got \[2\]/],
    },
    {
      name: 'ids of a float dtype',
      args: (d) => stats('--logits', join(d, 'good.npy'), '--ids', join(d, 'ids_float.npy'), '--out', 'out'),
      expected: [/ids_float\.npy/, /int32, int64 or uint32/, /got f32/],
    },
    {
      name: 'an empty vocabulary axis, shape (3, 0)',
      args: (d) => stats('--logits', join(d, 'empty_vocab.npy'), '--out', 'out'),
      expected: [/empty_vocab\.npy/, /vocabulary axis/, /\[3, 0\]/],
    },
    {
      name: 'an unknown --dtype (f8)',
      args: (d) => stats('--logits', join(d, 'good.npy'), '--dtype', 'f8', '--out', 'out'),
      expected: [/--dtype/, /f32, f16, bf16/, /got "f8"/],
    },
    {
      name: '--dtype contradicting the file',
      args: (d) => stats('--logits', join(d, 'good.npy'), '--dtype', 'bf16', '--out', 'out'),
      expected: [/--dtype/, /expected f32/, /got bf16/],
    },
    {
      name: 'a uint16 .npy without --dtype',
      args: (d) => stats('--logits', join(d, 'bits.npy'), '--out', 'out'),
      expected: [/--dtype/, /bf16 or f16/, /got none/],
    },
    {
      name: 'a missing logits file',
      args: (d) => stats('--logits', join(d, 'does_not_exist.npy'), '--out', 'out'),
      expected: [/does_not_exist\.npy/, /expected an existing/, /no such file/],
    },
    {
      name: 'a missing ids file',
      args: (d) => stats('--logits', join(d, 'good.npy'), '--ids', join(d, 'no_ids.npy'), '--out', 'out'),
      expected: [/no_ids\.npy/, /expected an existing \.npy or \.safetensors file for --ids/, /no such file/],
    },
    {
      name: 'a truncated .npy',
      args: (d) => stats('--logits', join(d, 'truncated.npy'), '--out', 'out'),
      expected: [/truncated\.npy/, /expected 48 data bytes/, /got 43 bytes.*truncated/],
    },
    {
      name: 'a file that is neither .npy nor .safetensors',
      args: (d) => stats('--logits', join(d, 'logits.txt'), '--out', 'out'),
      expected: [/logits\.txt/, /\.npy or \.safetensors/, /got '\.txt'/],
    },
    {
      name: 'a .npy with a bad magic',
      args: (d) => stats('--logits', join(d, 'garbage.npy'), '--out', 'out'),
      expected: [/garbage\.npy/, /magic/, /not a \.npy file/],
    },
    ...['0', '-1', 'nan', 'inf', 'Infinity', 'abc', '0x10', ''].map((t): BadCase => ({
      name: `--temperature ${JSON.stringify(t)}`,
      args: (d) => stats('--logits', join(d, 'good.npy'), '--temperature', t, '--out', 'out'),
      expected: [/--temperature/, /a number > 0/, new RegExp(`got "${t}"`)],
    })),
    {
      name: 'an unknown --backend',
      args: (d) => ['stats', '--logits', join(d, 'good.npy'), '--backend', 'cuda', '--out', 'out'],
      expected: [/--backend/, /auto \| webgpu \| native \| js/, /got "cuda"/],
    },
    {
      name: '--tensor naming a tensor the file lacks',
      args: (d) => stats('--logits', join(d, 'two.safetensors'), '--tensor', 'lm_head', '--out', 'out'),
      expected: [/--tensor/, /two\.safetensors/, /\(a, b\)/, /got "lm_head"/],
    },
    {
      name: 'no --tensor for a .safetensors file of two tensors',
      args: (d) => stats('--logits', join(d, 'two.safetensors'), '--out', 'out'),
      expected: [/--tensor/, /one of 2 tensors/, /got none/],
    },
    {
      name: '--tensor with a .npy file',
      args: (d) => stats('--logits', join(d, 'good.npy'), '--tensor', 'a', '--out', 'out'),
      expected: [/--tensor/, /no value for a \.npy file/, /got "a"/],
    },
    {
      name: 'neither --out nor --json',
      args: (d) => stats('--logits', join(d, 'good.npy')),
      expected: [/--out/, /output directory/, /got none/],
    },
    {
      name: 'no --logits',
      args: () => stats('--out', 'out'),
      expected: [/--logits/, /required option/],
    },
    {
      name: 'an unknown command',
      args: () => ['bogus'],
      expected: [/^intuitor: error: unknown command 'bogus'/],
    },
    {
      name: 'throughput --rows 0',
      args: () => ['throughput', '--rows', '0', '--vocab', '10'],
      expected: [/--rows/, /positive integer/, /got "0"/],
    },
  ];

  let inputs: string;
  let inputsBefore: string[];
  const runs = new Map<string, Promise<{ result: CliResult; cwd: string }>>();

  beforeAll(async () => {
    inputs = path('bad-inputs');
    mkdirSync(inputs, { recursive: true });
    const put = (name: string, tensor: HostTensor) => writeNpy(join(inputs, name), tensor);
    await put('good.npy', { dtype: 'f32', shape: [3, 4], data: Float32Array.from({ length: 12 }, (_, i) => Math.sin(i)) });
    await put('ids_big.npy', { dtype: 'i32', shape: [3], data: Int32Array.from([0, 3, 4]) });
    await put('ids_negative.npy', { dtype: 'i64', shape: [3], data: BigInt64Array.from([0n, -1n, 2n]) });
    await put('ids_short.npy', { dtype: 'i32', shape: [2], data: Int32Array.from([0, 1]) });
    await put('ids_float.npy', { dtype: 'f32', shape: [3], data: Float32Array.from([0, 1, 2]) });
    await put('empty_vocab.npy', { dtype: 'f32', shape: [3, 0], data: new Float32Array(0) });
    await put('bits.npy', { dtype: 'u16', shape: [3, 4], data: new Uint16Array(12).fill(0x3f80) });
    const whole = encodeNpy({ dtype: 'f32', shape: [3, 4], data: new Float32Array(12) });
    writeFileSync(join(inputs, 'truncated.npy'), whole.subarray(0, whole.byteLength - 5));
    writeFileSync(join(inputs, 'logits.txt'), '0.1 0.2 0.3\n');
    writeFileSync(join(inputs, 'garbage.npy'), 'this is not a numpy file, just text\n');
    await writeSafetensors(join(inputs, 'two.safetensors'), {
      a: { dtype: 'f32', shape: [3, 4], data: new Float32Array(12) },
      b: { dtype: 'bf16', shape: [3, 4], data: new Uint16Array(12) },
    });
    inputsBefore = readdirSync(inputs).sort();
    cases.forEach((c, i) => {
      // Each case runs in its own empty directory, with relative --out: anything written shows there.
      const cwd = path('bad-cwd', String(i));
      mkdirSync(cwd, { recursive: true });
      runs.set(c.name, cli(c.args(inputs), cwd).then((result) => ({ result, cwd })));
    });
  });

  test.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const { result: r, cwd } = await runs.get(c.name)!;
    const summary = { status: r.status, stdout: r.stdout, lines: r.messages.length };
    expect(summary).toEqual({ status: 2, stdout: '', lines: 1 });
    const line = r.messages[0]!;
    expect(line.startsWith('intuitor: error: ')).toBe(true);
    for (const pattern of c.expected) expect(line).toMatch(pattern);
    expect(readdirSync(cwd)).toEqual([]);
  });

  test('no input directory gained or lost a file', async () => {
    await Promise.all(runs.values());
    expect(readdirSync(inputs).sort()).toEqual(inputsBefore);
  });
});

describe('intuitor throughput on a small batch', () => {
  const size = ['--rows', '4', '--vocab', '1000', '--repeats', '1'];
  let run: Promise<CliResult>;
  beforeAll(() => {
    run = cli(['throughput', ...size]);
  });

  const ROW = /^(webgpu|native|js)\s+(\d+\.\d+) ms\s+(\S+)\s+(\S+)\s+(-?\d+\.\d+)\s+(-?\d+\.\d+)\s+(\S+)\s+(.+)$/;

  function checkTable(r: CliResult): void {
    expectSuccess(r);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toContain('built-in batch of 4 rows × V = 1000');
    expect(lines.some((l) => /^backend\s+time\/batch/.test(l))).toBe(true);
    const rows = lines.map((l) => ROW.exec(l)).filter((m): m is RegExpExecArray => m !== null);
    const backends = rows.map((m) => m[1]);
    expect(backends).toContain('js');
    if (!SKIP_NATIVE) expect(backends).toContain('native');
    if (!SKIP_GPU) expect(backends).toContain('webgpu');
    const js = rows.find((m) => m[1] === 'js')!;
    for (const m of rows) {
      const ms = Number(m[2]);
      expect(Number.isFinite(ms) && ms >= 0).toBe(true);
      // max|Δ| vs js, and the mean self-certainty and entropy, agree across backends.
      expect(Number(m[7])).toBeLessThan(1e-4);
      expect(Math.abs(Number(m[5]) - Number(js[5]))).toBeLessThanOrEqual(2e-4);
      expect(Math.abs(Number(m[6]) - Number(js[6]))).toBeLessThanOrEqual(2e-4);
    }
  }

  test('prints a table with every available backend, agreeing with the JS reference', async () => {
    checkTable(await run);
  });
});
