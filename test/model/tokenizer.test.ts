/** The tokenizer against the Hugging Face fixture (exact ids and text), and chat templates. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileFormatError, InvalidArgumentError } from '../../src/errors.js';
import { PolicyTokenizer } from '../../src/model/tokenizer.js';
import { FIXTURES } from '../helpers.js';

const dir = join(FIXTURES, 'tiny-qwen2');
const reference = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as {
  tokenizer_check: Record<string, number[]>; decode_check: string; input_ids: number[][];
};

describe('PolicyTokenizer (tiny-qwen2)', () => {
  const tokenizer = PolicyTokenizer.load(dir);

  test.each(Object.entries(reference.tokenizer_check))('encodes %j exactly as transformers does', (text, ids) => {
    expect(tokenizer.encode(text)).toEqual(ids);
  });

  test('decodes exactly as transformers does', () => {
    expect(tokenizer.decode(Object.values(reference.tokenizer_check)[0]!)).toBe(reference.decode_check);
  });

  test('the special token <|endoftext|> is one id (0), and round-trips', () => {
    expect(tokenizer.encode('a<|endoftext|>b')).toEqual([67, 0, 68]);
    expect(tokenizer.decode([67, 0, 68])).toBe('a<|endoftext|>b');
    expect(tokenizer.decode([67, 0, 68], { skipSpecialTokens: true })).toBe('ab');
    expect(tokenizer.decode([])).toBe(''); // an empty completion
  });

  test('bad ids and a missing template are refused by name', () => {
    expect(() => tokenizer.decode([1, -2])).toThrow(InvalidArgumentError);
    expect(tokenizer.hasChatTemplate).toBe(false);
    expect(() => tokenizer.applyChatTemplate([{ role: 'user', content: 'hi' }])).toThrow(/messages: expected a tokenizer with a chat template/);
  });
});

describe('chat templates', () => {
  let withTemplate: string;
  beforeAll(() => {
    withTemplate = mkdtempSync(join(tmpdir(), 'intuitor-tok-'));
    copyFileSync(join(dir, 'tokenizer.json'), join(withTemplate, 'tokenizer.json'));
    const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    // Qwen2.5's template shape, trimmed to the parts a plain conversation uses.
    config.chat_template = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    writeFileSync(join(withTemplate, 'tokenizer_config.json'), JSON.stringify(config));
  });
  afterAll(() => rmSync(withTemplate, { recursive: true, force: true }));

  test('renders messages with and without the generation prompt', () => {
    const t = PolicyTokenizer.load(withTemplate);
    const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is 2+2?' }];
    expect(t.applyChatTemplate(messages)).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n');
    expect(t.applyChatTemplate(messages, { addGenerationPrompt: false })).not.toContain('assistant');
  });

  test('a folder without tokenizer.json, or with a broken one, is refused naming the file', () => {
    expect(() => PolicyTokenizer.load(join(withTemplate, 'missing'))).toThrow(/tokenizer\.json: expected a Hugging Face tokenizer\.json in the model folder, got no such file/);
    const broken = mkdtempSync(join(tmpdir(), 'intuitor-tok-'));
    writeFileSync(join(broken, 'tokenizer.json'), '{ not json');
    expect(() => PolicyTokenizer.load(broken)).toThrow(FileFormatError);
    rmSync(broken, { recursive: true, force: true });
  });
});
