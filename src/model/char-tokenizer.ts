/**
 * A character-level tokenizer in the Hugging Face format, for the tiny models intuitor builds:
 * every character of a fixed alphabet is one token, so "12+3=15\n" is 8 tokens and decodes back
 * to exactly the same text.
 *
 * The format is the plainest one both readers accept: a BPE model with the characters as its
 * vocabulary and no merges (BPE starts from single characters, so with nothing to merge it is a
 * character tokenizer), no normalizer, no pre-tokenizer (the whole text is one word, split into
 * characters by BPE itself; nothing drops or rewrites whitespace), no post-processor (no tokens
 * are added), and the Fuse decoder, which concatenates the tokens as they are (without a decoder
 * Hugging Face joins tokens with spaces). @huggingface/tokenizers (which has no WordLevel model)
 * and Python's tokenizers / transformers' PreTrainedTokenizerFast both load it.
 *
 * Ids: the characters in the order given (0 … n−1), then the special tokens (EOS, then PAD when
 * it differs from EOS). Special tokens are also listed as added tokens, so their text encodes to
 * their id and `skip_special_tokens` drops them.
 */
import { InvalidArgumentError, describe } from '../errors.js';

export interface CharTokenizerSpecials {
  /** The end-of-sequence token's text, e.g. "<|endoftext|>" (more than one character). */
  eos: string;
  /** The padding token's text; default: the EOS token (no extra id). */
  pad?: string;
}

export interface CharTokenizerFiles {
  /** The content of tokenizer.json. */
  tokenizer: Record<string, unknown>;
  /** The content of tokenizer_config.json. */
  tokenizerConfig: Record<string, unknown>;
  /** Token text → id, the special tokens included. */
  vocab: Record<string, number>;
  eosId: number;
  padId: number;
  vocabSize: number;
}

function addedToken(id: number, content: string): Record<string, unknown> {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

/**
 * tokenizer.json and tokenizer_config.json for a character-level vocabulary. `chars` are single
 * Unicode code points, distinct; special tokens are longer than one character, so no text of
 * the alphabet can spell one by accident.
 */
export function charTokenizerJson(chars: readonly string[], specials: CharTokenizerSpecials, options: { modelMaxLength?: number } = {}): CharTokenizerFiles {
  if (!Array.isArray(chars) || chars.length === 0) throw new InvalidArgumentError('chars', 'a non-empty array of single characters', describe(chars));
  const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
  chars.forEach((ch, i) => {
    if (typeof ch !== 'string' || [...ch].length !== 1) throw new InvalidArgumentError(`chars[${i}]`, 'a single character (one code point)', describe(ch));
    if (vocab[ch] !== undefined) throw new InvalidArgumentError(`chars[${i}]`, 'a character not listed before', `${JSON.stringify(ch)} again (first at ${vocab[ch]})`);
    vocab[ch] = i;
  });
  if (typeof specials !== 'object' || specials === null) throw new InvalidArgumentError('specials', 'an object { eos, pad? }', describe(specials));
  const special = (name: string, text: unknown): string => {
    if (typeof text !== 'string' || [...text].length < 2) throw new InvalidArgumentError(`specials.${name}`, 'a token text of at least two characters (single characters are the alphabet)', describe(text));
    return text;
  };
  const eos = special('eos', specials.eos);
  const pad = specials.pad === undefined ? eos : special('pad', specials.pad);
  const eosId = chars.length;
  vocab[eos] = eosId;
  const padId = pad === eos ? eosId : eosId + 1;
  vocab[pad] = padId;
  const added = [addedToken(eosId, eos), ...(padId === eosId ? [] : [addedToken(padId, pad)])];
  const modelMaxLength = options.modelMaxLength ?? 32;
  if (!Number.isSafeInteger(modelMaxLength) || modelMaxLength < 1) throw new InvalidArgumentError('modelMaxLength', 'a positive integer', describe(modelMaxLength));

  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: 'Fuse' },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab: { ...vocab }, merges: [],
    },
  };
  const addedTokensDecoder = Object.fromEntries(added.map(({ id, ...rest }) => [String(id), rest]));
  const tokenizerConfig = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    eos_token: eos,
    pad_token: pad,
    bos_token: null,
    unk_token: null,
    model_max_length: modelMaxLength,
    clean_up_tokenization_spaces: false,
    add_bos_token: false,
    add_eos_token: false,
    added_tokens_decoder: addedTokensDecoder,
  };
  return { tokenizer, tokenizerConfig, vocab: { ...vocab }, eosId, padId, vocabSize: padId + 1 };
}
