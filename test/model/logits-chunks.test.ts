/**
 * PolicyModel.logits beyond one storage binding: on a context whose bindings hold 128 KiB (85
 * rows of the fixture's 384-entry logits), sequences go through the decoder in chunks and long
 * sequences get their logits in windows of rows; both must give the logits of one whole run.
 */
import { join } from 'node:path';
import type { GpuContext } from '../../src/gpu/context.js';
import { PolicyModel } from '../../src/model/policy.js';
import { mulberry32 } from '../../src/util/random.js';
import { FIXTURES, describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const fixture = join(FIXTURES, 'tiny-qwen2');
const SMALL_BINDING = 128 * 1024;

describeGpu('PolicyModel.logits in chunks and windows', () => {
  let whole: GpuContext;
  let small: GpuContext;
  let wholeModel: PolicyModel;
  let smallModel: PolicyModel;
  beforeAll(async () => {
    whole = await openGpu();
    small = await openGpu({ maxBindingBytes: SMALL_BINDING });
    wholeModel = await PolicyModel.load(whole, fixture);
    smallModel = await PolicyModel.load(small, fixture);
  });
  afterAll(() => {
    wholeModel.destroy();
    smallModel.destroy();
    whole.close();
    small.close();
  });

  const CASES: [number, number, number[] | undefined, string][] = [
    [5, 24, undefined, '120 rows: chunks of 3 sequences (72 rows) and 2'],
    [2, 100, [100, 61], '100 rows per sequence: one sequence per chunk, logits in windows of 85 and 15 rows; a padded sequence'],
  ];
  test.each(CASES)('batch %d × %d tokens, lengths %j: %s', async (batch, seqLen, lengths) => {
    const rand = mulberry32(batch * 1000 + seqLen);
    const ids = Array.from({ length: batch * seqLen }, () => Math.floor(rand() * 384));
    const want = await wholeModel.logits(ids, batch, seqLen, lengths);
    const got = await smallModel.logits(ids, batch, seqLen, lengths);
    expectClose('logits', got, want, TOLERANCES.chunkedLogits);
  });

  test('a sequence whose activations cannot fit one binding is refused, naming seqLen', async () => {
    const tiny = await openGpu({ maxBindingBytes: 100 * 1024 });
    try {
      const model = await PolicyModel.load(tiny, fixture);
      try {
        await expect(model.logits(new Array(200).fill(1), 1, 200)).rejects.toThrow(/seqLen: expected at most 145 tokens per sequence/);
      } finally {
        model.destroy();
      }
    } finally {
      tiny.close();
    }
  });
});
