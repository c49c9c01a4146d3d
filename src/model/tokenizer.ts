/**
 * The policy's tokenizer, from a Hugging Face model folder: `tokenizer.json` (+ the optional
 * `tokenizer_config.json` and its chat template), through @huggingface/tokenizers (the pure-JS
 * port of Hugging Face tokenizers) and @huggingface/jinja for chat templates: BPE and template
 * rendering are not written here.
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

export class PolicyTokenizer {
  private readonly tokenizer: Tokenizer;
  private readonly chatTemplate: Template | null;
  private readonly config: Record<string, unknown>;

  private constructor(tokenizer: Tokenizer, config: Record<string, unknown>) {
    this.tokenizer = tokenizer;
    this.config = config;
    const template = config.chat_template;
    this.chatTemplate = typeof template === 'string' ? new Template(template) : null;
  }

  static load(dir: string): PolicyTokenizer {
    const tokenizerPath = join(dir, 'tokenizer.json');
    if (!existsSync(tokenizerPath)) throw new FileFormatError(tokenizerPath, 'a Hugging Face tokenizer.json in the model folder', 'no such file');
    const configPath = join(dir, 'tokenizer_config.json');
    const config = existsSync(configPath) ? readJson(configPath) : {};
    const templatePath = join(dir, 'chat_template.jinja');
    if (config.chat_template === undefined && existsSync(templatePath)) config.chat_template = readFileSync(templatePath, 'utf8');
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(readJson(tokenizerPath), config);
    } catch (err) {
      if (err instanceof FileFormatError) throw err;
      throw new FileFormatError(tokenizerPath, 'a tokenizer.json that @huggingface/tokenizers supports', (err as Error).message);
    }
    return new PolicyTokenizer(tokenizer, config);
  }

  /** Token ids of `text`, without added special tokens unless asked. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    if (typeof text !== 'string') throw new InvalidArgumentError('text', 'a string', describe(text));
    return this.tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? false }).ids;
  }

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

  get hasChatTemplate(): boolean {
    return this.chatTemplate !== null;
  }

  /** Renders the chat template (as transformers' apply_chat_template with tokenize=False). */
  applyChatTemplate(messages: ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    if (!this.chatTemplate) throw new InvalidArgumentError('messages', 'a tokenizer with a chat template (tokenizer_config.json "chat_template")', 'none in this model');
    return this.chatTemplate.render({
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? true,
      bos_token: tokenText(this.config.bos_token),
      eos_token: tokenText(this.config.eos_token),
    });
  }
}
