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
    // 381 vocabulary entries and 3 added tokens: the last id is 383.
    expect(tokenizer.vocabSize).toBe(384);
    expect(typeof tokenizer.decode([383])).toBe('string');
    expect(() => tokenizer.checkIds([5, 384])).toThrow(/^ids: expected token ids in \[0, 384\) \(the tokenizer's vocabulary\), got 384 at index 1$/);
    expect(() => tokenizer.checkIds([5, 6, 2 ** 40], '--ids')).toThrow(/^--ids: .* got 1099511627776 at index 2$/);
    expect(() => tokenizer.checkIds([1.5])).toThrow(/got 1\.5 at index 0$/);
    expect(() => tokenizer.decode([1.5])).toThrow(InvalidArgumentError);
    // A model's embedding rows past the tokenizer (sampling can pick them) decode to nothing, as in transformers.
    expect(tokenizer.decode([67, 384, 68])).toBe(tokenizer.decode([67, 68]));
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

  /** A tokenizer folder (the fixture's tokenizer.json) whose tokenizer_config.json has this chat_template. */
  function folderWith(chatTemplate: unknown, file: 'tokenizer_config.json' | 'chat_template.jinja' = 'tokenizer_config.json'): string {
    const folder = mkdtempSync(join(tmpdir(), 'intuitor-tok-'));
    made.push(folder);
    copyFileSync(join(dir, 'tokenizer.json'), join(folder, 'tokenizer.json'));
    const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    if (file === 'chat_template.jinja') writeFileSync(join(folder, file), chatTemplate as string);
    else config.chat_template = chatTemplate;
    writeFileSync(join(folder, 'tokenizer_config.json'), JSON.stringify(config));
    return folder;
  }
  const made: string[] = [];
  afterAll(() => made.forEach((folder) => rmSync(folder, { recursive: true, force: true })));
  const user = [{ role: 'user', content: 'hi' }];

  test('a malformed template does not stop encoding or decoding; rendering names the file, the field and the parse error', () => {
    const folder = folderWith('{% for message in %}{{ message.content }}{% endfor %}');
    const t = PolicyTokenizer.load(folder);
    expect(t.encode('a<|endoftext|>b')).toEqual([67, 0, 68]);
    expect(t.decode([67, 0, 68])).toBe('a<|endoftext|>b');
    expect(t.hasChatTemplate).toBe(true);
    const message = new RegExp(`^${join(folder, 'tokenizer_config.json')}: expected "chat_template": a Jinja template that @huggingface/jinja parses, got SyntaxError: .+`);
    expect(() => t.applyChatTemplate(user)).toThrow(FileFormatError);
    expect(() => t.applyChatTemplate(user)).toThrow(message);
    // Parse errors other than SyntaxError (the parser's TypeError on an unclosed block) are caught too.
    expect(() => PolicyTokenizer.load(folderWith('{% if x %}a')).applyChatTemplate(user)).toThrow(/"chat_template": a Jinja template that @huggingface\/jinja parses, got TypeError: /);
    const jinjaFile = folderWith('{{ oops', 'chat_template.jinja');
    expect(() => PolicyTokenizer.load(jinjaFile).applyChatTemplate(user)).toThrow(new RegExp(`^${join(jinjaFile, 'chat_template.jinja')}: expected a Jinja template that @huggingface/jinja parses, got SyntaxError`));
  });

  test('the list form: the template named "default" is used; without one, using it is refused by name', () => {
    const list = [{ name: 'tool_use', template: 'TOOLS {{ messages[0].content }}' }, { name: 'default', template: 'DEFAULT {{ messages[0].content }}' }];
    expect(PolicyTokenizer.load(folderWith(list)).applyChatTemplate(user)).toBe('DEFAULT hi');

    const noDefault = PolicyTokenizer.load(folderWith([list[0]]));
    expect(noDefault.encode('a<|endoftext|>b')).toEqual([67, 0, 68]);
    expect(noDefault.hasChatTemplate).toBe(true);
    expect(() => noDefault.applyChatTemplate(user)).toThrow(/tokenizer_config\.json: expected "chat_template": a list with a template named "default" \(the one used when none is named\), got only "tool_use"$/);

    expect(() => PolicyTokenizer.load(folderWith([{ name: 'default' }])).applyChatTemplate(user)).toThrow(/"chat_template": a string or a list of \{"name", "template"\} strings, got entry 0: \{"name":"default"\}$/);
    expect(() => PolicyTokenizer.load(folderWith(42)).applyChatTemplate(user)).toThrow(/"chat_template": a string or a list of \{"name", "template"\} strings, got 42$/);
    expect(() => PolicyTokenizer.load(folderWith([{ name: 'default', template: '{{ x' }])).applyChatTemplate(user)).toThrow(/expected "chat_template" "default": a Jinja template that @huggingface\/jinja parses, got SyntaxError/);
  });

  test('a conversation the template refuses (raise_exception) is refused naming the messages', () => {
    const t = PolicyTokenizer.load(folderWith("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok"));
    expect(t.applyChatTemplate(user)).toBe('ok');
    expect(() => t.applyChatTemplate([{ role: 'system', content: 'x' }])).toThrow(InvalidArgumentError);
    expect(() => t.applyChatTemplate([{ role: 'system', content: 'x' }])).toThrow(/^messages: expected a conversation that the chat template of .+tokenizer_config\.json renders, got Error: System role not supported$/);
  });

  test('a folder without tokenizer.json, or with a broken one, is refused naming the file', () => {
    expect(() => PolicyTokenizer.load(join(withTemplate, 'missing'))).toThrow(/tokenizer\.json: expected a Hugging Face tokenizer\.json in the model folder, got no such file/);
    const broken = mkdtempSync(join(tmpdir(), 'intuitor-tok-'));
    writeFileSync(join(broken, 'tokenizer.json'), '{ not json');
    expect(() => PolicyTokenizer.load(broken)).toThrow(FileFormatError);
    rmSync(broken, { recursive: true, force: true });
  });
});
