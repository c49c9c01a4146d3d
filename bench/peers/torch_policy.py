"""PyTorch peers for bench/policy.bench.ts (suites train_step and decode), same card, same command.

On a random Qwen2.5-0.5B-shaped model (the config policy.bench.ts builds), float32, TF32 off:
  - train_step, torch-eager: Hugging Face transformers Qwen2ForCausalLM forward (labels: mean
    next-token cross-entropy) + backward + torch.optim.AdamW, batch 8 x 512, eager mode; also
    the peak memory torch.cuda.max_memory_allocated reports for the step.
  - decode, hf-generate: model.generate, greedy, batch 1 and 32, a 64-token prompt, 128 new tokens
    (min_new_tokens = max_new_tokens, so EOS never stops it).
  - score_completions, hf-forward (f32 and bf16): what a Python user writes to score existing
    completions, as TRL does: 32 sequences of a 128-token prompt and a 384-token completion, in
    forwards of 16 (the 8192 token rows a pass intuitor's scorer uses), each a Qwen2ForCausalLM
    forward keeping only the completion's logits (logits_to_keep), then log_softmax in float32 and
    the statistics score-completions writes: per-token log-prob, self-certainty (-mean log p -
    log V) and entropy, their means and the log-prob sum per sequence, copied to the host.
    bf16 runs the model in bfloat16 (the statistics still in float32 of its logits).
Wall-clock per step after torch.cuda.synchronize(), as the WebGPU suite does. Rows follow
bench/schema.ts's BenchRow.

  python3 bench/peers/torch_policy.py --json OUT.json
"""
import argparse
import datetime
import json
import math
import statistics
import time

import torch


def config_dict():
    return dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        rms_norm_eps=1e-6, vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0, tie_word_embeddings=True,
        bos_token_id=151643, eos_token_id=151643,
    )


def quantile(values, q):
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def row(kernel, backend, shape, samples, rows_per_call, device, note, dtype="f32"):
    med = statistics.median(samples)
    return {
        "kernel": kernel, "backend": backend, "dtype": dtype, "shape": shape, "device": device, "method": "wall-clock",
        "medianMs": med, "p20Ms": quantile(samples, 0.2), "p80Ms": quantile(samples, 0.8), "samples": len(samples),
        "gbps": None, "gflops": None, "rowsPerSecond": rows_per_call / (med / 1000), "ceiling": None, "fractionOfCeiling": None,
        "ratios": {}, "version": f"torch {torch.__version__}", "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "note": note,
    }


def timed(fn, count):
    samples = []
    for i in range(count + 1):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        if i > 0:
            samples.append((time.perf_counter() - start) * 1000)
    return samples


class Qwen2Eager(torch.nn.Module):
    """A plain PyTorch Qwen2 decoder (RMSNorm, RoPE, GQA through SDPA, SwiGLU, tied lm_head), used
    when transformers is not installed; the same arithmetic as Qwen2ForCausalLM in float32."""

    def __init__(self, c):
        super().__init__()
        nn = torch.nn
        self.c = c
        h, inter, heads, kv = c["hidden_size"], c["intermediate_size"], c["num_attention_heads"], c["num_key_value_heads"]
        self.d = h // heads
        self.embed = nn.Embedding(c["vocab_size"], h)
        self.layers = nn.ModuleList()
        for _ in range(c["num_hidden_layers"]):
            layer = nn.Module()
            layer.n1, layer.n2 = nn.RMSNorm(h, eps=c["rms_norm_eps"]), nn.RMSNorm(h, eps=c["rms_norm_eps"])
            layer.q, layer.k, layer.v = nn.Linear(h, heads * self.d), nn.Linear(h, kv * self.d), nn.Linear(h, kv * self.d)
            layer.o = nn.Linear(heads * self.d, h, bias=False)
            layer.gate, layer.up, layer.down = nn.Linear(h, inter, bias=False), nn.Linear(h, inter, bias=False), nn.Linear(inter, h, bias=False)
            self.layers.append(layer)
        self.norm = nn.RMSNorm(h, eps=c["rms_norm_eps"])
        for p in self.parameters():
            torch.nn.init.normal_(p, std=0.02) if p.dim() > 1 else None
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, self.d, 2).float() / self.d))
        self.register_buffer("inv_freq", inv, persistent=False)

    def rope(self, x, pos):
        f = pos[:, None].float() * self.inv_freq[None, :]
        cos, sin = torch.cat([f, f], -1).cos()[None, None], torch.cat([f, f], -1).sin()[None, None]
        x1, x2 = x[..., : self.d // 2], x[..., self.d // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def forward(self, ids, cache=None, start=0):
        B, T = ids.shape
        heads, kv = self.c["num_attention_heads"], self.c["num_key_value_heads"]
        pos = torch.arange(start, start + T, device=ids.device)
        x = self.embed(ids)
        new_cache = []
        for i, L in enumerate(self.layers):
            h = L.n1(x)
            q = self.rope(L.q(h).view(B, T, heads, self.d).transpose(1, 2), pos)
            k = self.rope(L.k(h).view(B, T, kv, self.d).transpose(1, 2), pos)
            v = L.v(h).view(B, T, kv, self.d).transpose(1, 2)
            if cache is not None:
                k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
            new_cache.append((k, v))
            a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=cache is None, enable_gqa=True)
            x = x + L.o(a.transpose(1, 2).reshape(B, T, heads * self.d))
            h = L.n2(x)
            x = x + L.down(torch.nn.functional.silu(L.gate(h)) * L.up(h))
        return self.norm(x) @ self.embed.weight.T, new_cache


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    torch.manual_seed(0)
    try:
        import transformers
        from transformers import Qwen2Config, Qwen2ForCausalLM
        model = Qwen2ForCausalLM(Qwen2Config(**config_dict(), attn_implementation="sdpa")).to(dev, torch.float32)
        impl = f"transformers {transformers.__version__}"
    except ImportError:
        model = Qwen2Eager(config_dict()).to(dev, torch.float32)
        impl = "plain PyTorch Qwen2 (transformers not installed)"
    device = f"{torch.cuda.get_device_name()} (PyTorch {torch.__version__}, {impl}, CUDA {torch.version.cuda})"
    params = sum(p.numel() for p in model.parameters())
    rows_out = []

    batch, seq = 8, 512
    ids = torch.randint(0, 151936, (batch, seq), device=dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()

    def loss_of():
        if isinstance(model, Qwen2Eager):
            logits, _ = model(ids)
            return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        return model(input_ids=ids, labels=ids).loss

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_of()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()
    torch.cuda.reset_peak_memory_stats()
    samples = timed(step, args.steps)
    peak = torch.cuda.max_memory_allocated()
    rows_out.append(row("train_step", "torch-eager", [batch, seq], samples, batch * seq, device,
                        f"{impl} f32 eager + AdamW + clip, {params / 1e6:.0f}M parameters; peak memory {peak / 2**30:.2f} GiB"))
    del opt
    model.zero_grad(set_to_none=True)
    torch.cuda.empty_cache()

    model.eval()
    prompt, new = 64, 128
    for gen_batch in (1, 32):
        prompts = torch.randint(0, 151936, (gen_batch, prompt), device=dev)
        with torch.no_grad():
            if isinstance(model, Qwen2Eager):
                def gen():
                    logits, cache = model(prompts)
                    tok = logits[:, -1].argmax(-1, keepdim=True)
                    for i in range(new - 1):
                        logits, cache = model(tok, cache, prompt + i)
                        tok = logits[:, -1].argmax(-1, keepdim=True)
                backend, note = "torch-eager", "greedy loop with a KV cache (transformers not installed), f32, SDPA"
            else:
                gen = lambda: model.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
                backend, note = "hf-generate", "HF generate, greedy, f32, SDPA attention, KV cache"
            samples = timed(gen, 3)
        rows_out.append(row("decode", backend, [gen_batch, prompt, new], samples, gen_batch * new, device, note + "; rows/s = new tokens/s"))

    count, prompt_len, completion_len, per_forward = 32, 128, 384, 16
    seqs = torch.randint(0, 151936, (count, prompt_len + completion_len), device=dev)
    vocab = config_dict()["vocab_size"]

    def completion_logits(batch):
        if isinstance(model, Qwen2Eager):
            return model(batch)[0][:, prompt_len - 1:-1]
        return model(input_ids=batch, logits_to_keep=completion_len + 1).logits[:, :-1]

    def score_all():
        out = []
        for start in range(0, count, per_forward):
            batch = seqs[start:start + per_forward]
            logp = torch.log_softmax(completion_logits(batch).float(), dim=-1)
            chosen = logp.gather(-1, batch[:, prompt_len:, None]).squeeze(-1)
            entropy = -(logp.exp() * logp).sum(-1)
            self_certainty = -logp.mean(-1) - math.log(vocab)
            out.append(torch.stack([self_certainty.mean(-1), chosen.sum(-1), chosen.mean(-1), entropy.mean(-1)], -1).cpu())
        return out

    for dtype_name, torch_dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        model.to(torch_dtype)
        with torch.no_grad():
            samples = timed(score_all, 5)
        rows_out.append(row("score_completions", "torch-eager" if isinstance(model, Qwen2Eager) else "hf-forward", [count, prompt_len + completion_len], samples,
                            count * (prompt_len + completion_len), device,
                            f"{impl} {dtype_name} forward (logits of the completion only) + float32 log_softmax, log-prob, self-certainty, entropy per token and their means; {count // per_forward} forwards of {per_forward}x{prompt_len + completion_len}; rows/s = sequence tokens/s",
                            dtype_name))

    with open(args.json, "w") as f:
        json.dump({"rows": rows_out}, f, indent=2)
    for r in rows_out:
        print(f"{r['kernel']:<12} {r['backend']:<12} {r['medianMs']:9.2f} ms  {r['rowsPerSecond']:10.0f} tokens/s  {r['note']}")


if __name__ == "__main__":
    main()
