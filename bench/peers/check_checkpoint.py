"""Checks that an intuitor checkpoint loads in Hugging Face transformers unchanged.

Loads DIR with AutoModelForCausalLM and AutoTokenizer (no arguments beyond the folder), runs the
ids in IDS.npy, and compares the logits with intuitor's own for the same checkpoint (LOGITS.npy,
from `intuitor logits`); also reports whether the embeddings are still tied.

  python3 bench/peers/check_checkpoint.py DIR IDS.npy LOGITS.npy
"""
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    folder, ids_path, logits_path = sys.argv[1:4]
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = torch.from_numpy(np.load(ids_path).astype(np.int64))
    with torch.no_grad():
        ours = torch.from_numpy(np.load(logits_path)).double()
        theirs = model.double()(input_ids=ids).logits
    diff = (theirs - ours).abs().max().item()
    tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    print(f"loaded {type(model).__name__} ({model.dtype}), tokenizer {type(tokenizer).__name__} ({len(tokenizer)} tokens); "
          f"max |logits(transformers) - logits(intuitor)| = {diff:.2e}; embeddings tied: {tied}")
    sys.exit(0 if diff < 1e-4 and tied == model.config.tie_word_embeddings else 1)


if __name__ == "__main__":
    main()
