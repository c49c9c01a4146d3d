"""PyTorch peers for bench/policy.bench.ts (suites train_step and decode), same card, same command.

On a random Qwen2.5-0.5B-shaped model (the config policy.bench.ts builds), float32, TF32 off:
  - train_step, torch-eager: Hugging Face transformers Qwen2ForCausalLM forward (labels: mean
    next-token cross-entropy) + backward + torch.optim.AdamW, batch 8 x 512, eager mode; also
    the peak memory torch.cuda.max_memory_allocated reports for the step.
  - decode, hf-generate: model.generate, greedy, batch 32, a 64-token prompt, 128 new tokens
    (min_new_tokens = max_new_tokens, so EOS never stops it).
Wall-clock per step after torch.cuda.synchronize(), as the WebGPU suite does. Rows follow
bench/schema.ts's BenchRow.

  python3 bench/peers/torch_policy.py --json OUT.json
"""
import argparse
import datetime
import json
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


def row(kernel, backend, shape, samples, rows_per_call, device, note):
    med = statistics.median(samples)
    return {
        "kernel": kernel, "backend": backend, "dtype": "f32", "shape": shape, "device": device, "method": "wall-clock",
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    import transformers
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    device = f"{torch.cuda.get_device_name()} (PyTorch {torch.__version__}, transformers {transformers.__version__}, CUDA {torch.version.cuda})"
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**config_dict(), attn_implementation="sdpa")).to(dev, torch.float32)
    params = sum(p.numel() for p in model.parameters())
    rows_out = []

    batch, seq = 8, 512
    ids = torch.randint(0, 151936, (batch, seq), device=dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()
    torch.cuda.reset_peak_memory_stats()
    samples = timed(step, args.steps)
    peak = torch.cuda.max_memory_allocated()
    rows_out.append(row("train_step", "torch-eager", [batch, seq], samples, batch * seq, device,
                        f"HF Qwen2ForCausalLM f32 eager + AdamW + clip, {params / 1e6:.0f}M parameters; peak memory {peak / 2**30:.2f} GiB"))
    del opt
    model.zero_grad(set_to_none=True)
    torch.cuda.empty_cache()

    model.eval()
    gen_batch, prompt, new = 32, 64, 128
    prompts = torch.randint(0, 151936, (gen_batch, prompt), device=dev)
    with torch.no_grad():
        gen = lambda: model.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
        samples = timed(gen, 3)
    rows_out.append(row("decode", "hf-generate", [gen_batch, prompt, new], samples, gen_batch * new, device, "greedy, f32, SDPA attention, KV cache; rows/s = new tokens/s"))

    with open(args.json, "w") as f:
        json.dump({"rows": rows_out}, f, indent=2)
    for r in rows_out:
        print(f"{r['kernel']:<12} {r['backend']:<12} {r['medianMs']:9.2f} ms  {r['rowsPerSecond']:10.0f} tokens/s  {r['note']}")


if __name__ == "__main__":
    main()
