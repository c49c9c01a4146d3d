/**
 * The policy's tokenizer, from a Hugging Face model folder: `tokenizer.json` (+ the optional
 * `tokenizer_config.json` and its chat template), through @huggingface/tokenizers (the pure-JS
 * port of Hugging Face tokenizers) and @huggingface/jinja for chat templates: BPE and template
 * rendering are not written here. The chat template is compiled on first use, so a broken one
 * does not stop encoding and decoding.
 */
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileFormatError, InvalidArgumentError, describe } from '../errors.js';

export interface ChatMessage {
  role: string;
  content: string;
}

function readJson(path: string): Record<string, unknown> {
  try {
    const json: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`a ${describe(json)}`);
    return json as Record<string, unknown>;
  } catch (err) {
    throw new FileFormatError(path, 'a JSON object', (err as Error).message);
  }
}

/** A special token as tokenizer_config.json writes it: a string, or { content } in older files. */
function tokenText(token: unknown): string {
  if (typeof token === 'string') return token;
  if (typeof token === 'object' && token !== null && typeof (token as { content?: unknown }).content === 'string') return (token as { content: string }).content;
  return '';
}

/** Where a chat template was read from, for its error messages. */
interface TemplateSource {
  path: string;
  /** The field holding it ('' for a chat_template.jinja file). */
  field: string;
}

/**
 * The template text of a `chat_template`: a string, or transformers' list of named templates
 * [{ "name", "template" }], of which the one named "default" is used.
 */
function templateText(spec: unknown, source: TemplateSource): { text: string; field: string } {
  if (typeof spec === 'string') return { text: spec, field: source.field };
  const listForm = '"chat_template": a string or a list of {"name", "template"} strings';
  if (!Array.isArray(spec)) throw new FileFormatError(source.path, listForm, describe(spec));
  const bad = spec.findIndex((t) => typeof t?.name !== 'string' || typeof t?.template !== 'string');
  if (bad >= 0) throw new FileFormatError(source.path, listForm, `entry ${bad}: ${JSON.stringify(spec[bad])?.slice(0, 80)}`);
  const named = spec as { name: string; template: string }[];
  const chosen = named.find((t) => t.name === 'default');
  if (chosen === undefined) {
    throw new FileFormatError(source.path, '"chat_template": a list with a template named "default" (the one used when none is named)',
      `only ${named.map((t) => JSON.stringify(t.name)).join(', ') || 'an empty list'}`);
  }
  return { text: chosen.template, field: `${source.field} "default"` };
}

/**
 * The characters a tokenizer can encode, where it silently drops every other one: a BPE model
 * with no unknown token, no byte fallback, no byte-level pre-tokenizer and no normalizer (the
 * character tokenizer of the models intuitor builds) starts from single characters and can only
 * spell those in its vocabulary. Null for any other tokenizer: it represents every text.
 */
function droppingAlphabet(json: Record<string, unknown>): ReadonlySet<string> | null {
  const model = json.model as { type?: unknown; unk_token?: unknown; byte_fallback?: unknown; vocab?: unknown } | undefined;
  if (model?.type !== 'BPE' || model.unk_token != null || model.byte_fallback === true) return null;
  if (json.normalizer != null || JSON.stringify(json.pre_tokenizer ?? null).includes('"ByteLevel"')) return null;
  if (typeof model.vocab !== 'object' || model.vocab === null) return null;
  return new Set(Object.keys(model.vocab).filter((token) => [...token].length === 1));
}

export class PolicyTokenizer {
  /** The model folder it was loaded from (named in errors). */
  readonly dir: string;
  private readonly tokenizer: Tokenizer;
  private readonly alphabet: ReadonlySet<string> | null;
  private readonly addedTokens: readonly string[];
  private readonly config: Record<string, unknown>;
  private readonly templateSource: TemplateSource;
  /** Compiled on first use, so a broken template only fails what renders it. */
  private chatTemplate: Template | undefined;
  /** One past the largest token id, added tokens included. */
  readonly vocabSize: number;

  private constructor(dir: string, json: Record<string, unknown>, tokenizer: Tokenizer, config: Record<string, unknown>, templateSource: TemplateSource) {
    this.dir = dir;
    this.alphabet = droppingAlphabet(json);
    this.addedTokens = Array.isArray(json.added_tokens)
      ? (json.added_tokens as { content?: unknown }[]).map((t) => t.content).filter((c): c is string => typeof c === 'string' && c !== '')
      : [];
    this.tokenizer = tokenizer;
    this.config = config;
    this.templateSource = templateSource;
    let largest = -1;
    for (const id of tokenizer.get_vocab(true).values()) largest = Math.max(largest, id);
    this.vocabSize = largest + 1;
  }

  static load(dir: string): PolicyTokenizer {
    const tokenizerPath = join(dir, 'tokenizer.json');
    if (!existsSync(tokenizerPath)) throw new FileFormatError(tokenizerPath, 'a Hugging Face tokenizer.json in the model folder', 'no such file');
    const configPath = join(dir, 'tokenizer_config.json');
    const config = existsSync(configPath) ? readJson(configPath) : {};
    const templatePath = join(dir, 'chat_template.jinja');
    let templateSource: TemplateSource = { path: configPath, field: '"chat_template"' };
    if (config.chat_template === undefined && existsSync(templatePath)) {
      config.chat_template = readFileSync(templatePath, 'utf8');
      templateSource = { path: templatePath, field: '' };
    }
    const json = readJson(tokenizerPath);
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(json, config);
    } catch (err) {
      throw new FileFormatError(tokenizerPath, 'a tokenizer.json that @huggingface/tokenizers supports', (err as Error).message);
    }
    return new PolicyTokenizer(dir, json, tokenizer, config, templateSource);
  }

  /**
   * Token ids of `text`, without added special tokens unless asked. Text with characters the
   * tokenizer cannot encode (it would drop them) is refused, naming `source`: where the text came
   * from ('--text', 'prompt 3 of task arithmetic', ...).
   */
  encode(text: string, options: { addSpecialTokens?: boolean; source?: string } = {}): number[] {
    const source = options.source ?? 'text';
    if (typeof text !== 'string') throw new InvalidArgumentError(source, 'a string', describe(text));
    this.checkEncodable(text, source);
    return this.tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? false }).ids;
  }

  /** Refuses text with characters that have no token (see droppingAlphabet), naming them, `source` and the model. */
  checkEncodable(text: string, source: string): void {
    if (this.alphabet === null) return;
    let rest = text;
    for (const token of this.addedTokens) rest = rest.split(token).join('');
    const missing = [...new Set([...rest].filter((ch) => !this.alphabet!.has(ch)))];
    if (missing.length > 0) {
      throw new InvalidArgumentError(source, `text the tokenizer of ${this.dir} can encode (it has no token for other characters, and would drop them)`,
        `${describe(text)}, with ${missing.map((ch) => JSON.stringify(ch)).join(', ')}`);
    }
  }

  /** Refuses anything but token ids in [0, vocabSize), naming `argument`, the id and its index. */
  checkIds(ids: readonly number[], argument = 'ids'): void {
    if (!Array.isArray(ids)) throw new InvalidArgumentError(argument, 'an array of token ids', describe(ids));
    const bad = ids.findIndex((id) => !Number.isSafeInteger(id) || id < 0 || id >= this.vocabSize);
    if (bad >= 0) {
      throw new InvalidArgumentError(argument, `token ids in [0, ${this.vocabSize}) (the tokenizer's vocabulary)`, `${describe(ids[bad])} at index ${bad}`);
    }
  }

  /**
   * The text of token ids. Ids past the tokenizer's vocabulary (a model's embedding rows beyond it,
   * as in Qwen2.5's 151,936 against 151,665, which sampling can pick) decode to nothing, as in
   * transformers; user input goes through checkIds first.
   */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    if (!Array.isArray(ids) || !ids.every((id) => Number.isSafeInteger(id) && id >= 0)) {
      throw new InvalidArgumentError('ids', 'an array of non-negative integer token ids', describe(ids));
    }
    // The library refuses an empty list; an empty completion (EOS alone, filtered out) is empty text.
    if (ids.length === 0) return '';
    return this.tokenizer.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  /**
   * For PolicyModel.generate's shouldStop: ends a sequence once its decoded new text contains
   * `text` (a stop string); undefined for '' (stop at EOS only).
   */
  stopWhenTextContains(text: string): ((index: number, ids: readonly number[]) => boolean) | undefined {
    return text === '' ? undefined : (_, ids) => this.decode(ids).includes(text);
  }

  /** Whether the model declares a chat template (applyChatTemplate still refuses a broken one). */
  get hasChatTemplate(): boolean {
    return this.config.chat_template !== undefined && this.config.chat_template !== null;
  }

  private template(): Template {
    if (this.chatTemplate) return this.chatTemplate;
    if (!this.hasChatTemplate) throw new InvalidArgumentError('messages', 'a tokenizer with a chat template (tokenizer_config.json "chat_template")', 'none in this model');
    const { text, field } = templateText(this.config.chat_template, this.templateSource);
    try {
      this.chatTemplate = new Template(text);
    } catch (err) {
      throw new FileFormatError(this.templateSource.path, `${field ? `${field}: ` : ''}a Jinja template that @huggingface/jinja parses`, `${(err as Error).name}: ${(err as Error).message}`);
    }
    return this.chatTemplate;
  }

  /** Renders the chat template (as transformers' apply_chat_template with tokenize=False). */
  applyChatTemplate(messages: ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    const template = this.template();
    try {
      return template.render({
        messages,
        add_generation_prompt: options.addGenerationPrompt ?? true,
        bos_token: tokenText(this.config.bos_token),
        eos_token: tokenText(this.config.eos_token),
      });
    } catch (err) {
      // Templates refuse conversations they do not support (raise_exception) and fail on missing fields.
      throw new InvalidArgumentError('messages', `a conversation that the chat template of ${this.templateSource.path} renders`, `${(err as Error).name}: ${(err as Error).message}`);
    }
  }
}
