/**
 * What a scoring request holds, in its three forms, and how each becomes token ids:
 *
 * - text:           {"id"?, "prompt": "...", "completion": "..."}
 * - chat:           {"id"?, "messages": [{"role", "content"}, ...]}: the last message is the
 *                   assistant's completion; the ones before it are rendered with the model's chat
 *                   template (with the generation prompt), as the prompt
 * - pre-tokenised:  {"id"?, "prompt_ids": [...], "completion_ids": [...]}
 *
 * Text prompts and completions are tokenised separately and concatenated, as TRL does, so the
 * completion's tokens are exactly those of its own text. Every problem is an ItemError naming
 * where the item came from (`line 12`, `items[3]`), the field, what was expected and what came.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { ChatMessage, PolicyTokenizer } from '../model/tokenizer.js';

/** An item ready to score: its id, and the ids of its prompt and completion. */
export interface ScoreItem {
  id: string | number;
  promptIds: number[];
  completionIds: number[];
}

/** A bad item: `where` is `line N` or `items[i]`, `field` the JSON field at fault ('' for the whole item). */
export class ItemError extends InvalidArgumentError {
  readonly where: string;
  readonly field: string;
  constructor(where: string, field: string, expected: string, received: string) {
    super(field === '' ? where : `${where}: "${field}"`, expected, received);
    this.where = where;
    this.field = field;
  }
}

/** What parsing needs to know of the model: its tokenizer and the bounds of a sequence. */
export interface ItemLimits {
  tokenizer: PolicyTokenizer;
  /** Token ids must be below this (the model's vocab_size, the embedding's rows). */
  vocabSize: number;
  /** Prompt + completion at most this many tokens (max_position_embeddings). */
  maxTokens: number;
}

const FORMS = 'an object with "prompt" and "completion" strings, "messages" (a chat ending in the assistant\'s completion), or "prompt_ids" and "completion_ids" arrays';

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function idOf(item: Record<string, unknown>, where: string, fallback: string | number): string | number {
  const id = item.id;
  if (id === undefined) return fallback;
  if (typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id))) return id;
  throw new ItemError(where, 'id', 'a string or a finite number', describe(id));
}

function text(item: Record<string, unknown>, field: string, where: string): string {
  const value = item[field];
  if (typeof value !== 'string') throw new ItemError(where, field, 'a string', describe(value));
  return value;
}

/** The ids of a field's text; a tokenizer's refusal (text it cannot represent) names the item and field. */
function encode(tokenizer: PolicyTokenizer, value: string, where: string, field: string): number[] {
  try {
    return tokenizer.encode(value);
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new ItemError(where, field, 'text the model\'s tokenizer can represent', err.message);
    throw err;
  }
}

function tokenIds(item: Record<string, unknown>, field: string, where: string, vocabSize: number): number[] {
  const value = item[field];
  if (!Array.isArray(value)) throw new ItemError(where, field, 'an array of token ids', describe(value));
  const bad = value.findIndex((id) => !Number.isSafeInteger(id) || id < 0 || id >= vocabSize);
  if (bad >= 0) throw new ItemError(where, field, `token ids in [0, ${vocabSize}) (the model's vocab_size)`, `${describe(value[bad])} at index ${bad}`);
  return value as number[];
}

function messages(item: Record<string, unknown>, where: string): ChatMessage[] {
  const value = item.messages;
  if (!Array.isArray(value) || value.length < 2) throw new ItemError(where, 'messages', 'an array of at least two {"role", "content"} messages', describe(value));
  value.forEach((m, i) => {
    if (!isObject(m) || typeof m.role !== 'string' || typeof m.content !== 'string') {
      throw new ItemError(where, `messages[${i}]`, 'a {"role": string, "content": string} message', describe(m));
    }
  });
  const last = value.at(-1) as ChatMessage;
  if (last.role !== 'assistant') throw new ItemError(where, `messages[${value.length - 1}].role`, '"assistant" (the last message is the completion scored)', JSON.stringify(last.role));
  return value as ChatMessage[];
}

/**
 * One request item as token ids, checked against the model: ids in its vocabulary, a prompt and a
 * completion of at least one token each (the prompt's last token predicts the completion's first),
 * and at most `maxTokens` in all. `fallbackId` is the id of an item without one (its line number).
 */
export function parseScoreItem(value: unknown, where: string, fallbackId: string | number, limits: ItemLimits): ScoreItem {
  if (!isObject(value)) throw new ItemError(where, '', FORMS, describe(value));
  const id = idOf(value, where, fallbackId);
  let promptIds: number[];
  let completionIds: number[];
  let promptField: string;
  let completionField: string;
  if (value.prompt_ids !== undefined || value.completion_ids !== undefined) {
    [promptField, completionField] = ['prompt_ids', 'completion_ids'];
    promptIds = tokenIds(value, promptField, where, limits.vocabSize);
    completionIds = tokenIds(value, completionField, where, limits.vocabSize);
  } else if (value.messages !== undefined) {
    const chat = messages(value, where);
    [promptField, completionField] = ['messages', `messages[${chat.length - 1}].content`];
    let prompt: string;
    try {
      prompt = limits.tokenizer.applyChatTemplate(chat.slice(0, -1), { addGenerationPrompt: true });
    } catch (err) {
      throw new ItemError(where, 'messages', 'a conversation the model\'s chat template renders', (err as Error).message);
    }
    promptIds = encode(limits.tokenizer, prompt, where, promptField);
    completionIds = encode(limits.tokenizer, chat.at(-1)!.content, where, completionField);
  } else if (value.prompt !== undefined || value.completion !== undefined) {
    [promptField, completionField] = ['prompt', 'completion'];
    promptIds = encode(limits.tokenizer, text(value, promptField, where), where, promptField);
    completionIds = encode(limits.tokenizer, text(value, completionField, where), where, completionField);
  } else {
    throw new ItemError(where, '', FORMS, `an object with keys ${JSON.stringify(Object.keys(value))}`);
  }
  if (promptIds.length === 0) throw new ItemError(where, promptField, 'a prompt of at least one token (its last token predicts the completion\'s first)', 'none');
  if (completionIds.length === 0) throw new ItemError(where, completionField, 'a completion of at least one token', 'none');
  const total = promptIds.length + completionIds.length;
  if (total > limits.maxTokens) {
    throw new ItemError(where, '', `prompt + completion of at most ${limits.maxTokens} tokens (the model's max_position_embeddings)`, `${promptIds.length} + ${completionIds.length} tokens`);
  }
  return { id, promptIds, completionIds };
}
