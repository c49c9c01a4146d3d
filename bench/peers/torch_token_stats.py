"""PyTorch peers for bench/token-stats, run on the same card in the same command.

Times, with CUDA events over rotated inputs, after a warm-up and in samples of >= 10 ms (as the
WebGPU suite does):
  - torch-eager:   the eager formulas a PyTorch user writes for the same four statistics
                   (logsumexp, mean, gather, softmax·x for the entropy), in float32 math;
  - torch-logsoftmax: INTUITOR/TRL style log_softmax → gather and mean (no entropy);
  - torch-compile: torch.compile of torch-eager (dynamic over N, one compile per dtype);
  - copy:          a large device copy (the bandwidth ceiling, read + write bytes);
  - matmul:        cuBLAS f32 4096^3 with TF32 off (the f32 FLOP/s ceiling);
  - linear:        cuBLAS x @ W.T at the Qwen2.5-0.5B MLP shapes (M 2048, 896 <-> 4864), f32, TF32 off;
  - attention:     scaled_dot_product_attention, causal, f32, B 8, 14/2 heads (GQA), T 2048, D 64.
Writes rows in bench/schema.ts's BenchRow schema.

  python3 bench/peers/torch_token_stats.py --rows 8,256,2048 --dtypes f32,bf16 --json OUT.json
"""
import argparse
import datetime
import json
import math
import statistics

import torch

VOCAB = 151936
ROTATION_BYTES = 256 * 2**20


def eager(z, ids, temperature: float):
    x = z.float() / temperature
    lse = torch.logsumexp(x, -1)
    self_certainty = lse - x.mean(-1) - math.log(x.shape[-1])
    p = torch.softmax(x, -1)
    entropy = lse - (p * x).sum(-1)
    logprob = x.gather(-1, ids[:, None])[:, 0] - lse
    return logprob, self_certainty, entropy, lse


def log_softmax_style(z, ids, temperature: float):
    logp = torch.log_softmax(z.float() / temperature, -1)
    logprob = logp.gather(-1, ids[:, None])[:, 0]
    self_certainty = -logp.mean(-1) - math.log(z.shape[-1])
    return logprob, self_certainty


def quantile(values, q):
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def time_cuda(fn, inputs, samples, min_sample_ms=10.0, warmup_ms=300.0):
    """Milliseconds per call. Like the WebGPU suite: >= warmup_ms of work first (clocks leave
    idle), then samples of >= min_sample_ms, each cycling over every rotated input."""

    def run(cycles):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(cycles):
            for x in inputs:
                fn(x)
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)

    per_cycle = run(1)
    warmed = per_cycle
    while warmed < warmup_ms:
        cycles = max(1, math.ceil(min_sample_ms / per_cycle))
        ms = run(cycles)
        warmed += ms
        per_cycle = ms / cycles
    cycles = max(1, math.ceil(min_sample_ms / per_cycle))
    return [run(cycles) / (cycles * len(inputs)) for _ in range(samples)]


def row(kernel, backend, dtype, shape, samples, bytes_moved, rows, device, note=""):
    med = statistics.median(samples)
    return {
        "kernel": kernel, "backend": backend, "dtype": dtype, "shape": shape, "device": device,
        "method": "cuda-event", "medianMs": med, "p20Ms": quantile(samples, 0.2), "p80Ms": quantile(samples, 0.8),
        "samples": len(samples), "gbps": bytes_moved / (med / 1000) / 1e9 if bytes_moved else None, "gflops": None,
        "rowsPerSecond": rows / (med / 1000) if rows else None, "ceiling": None, "fractionOfCeiling": None,
        "ratios": {}, "version": f"torch {torch.__version__}", "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "note": note,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="8,256,2048")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    dev = torch.device("cuda")
    device = f"{torch.cuda.get_device_name()} (PyTorch {torch.__version__}, CUDA {torch.version.cuda})"
    rows_out = []

    copy_bytes = 2**30
    src = torch.randn(copy_bytes // 4, device=dev)
    dst = torch.empty_like(src)
    rows_out.append(row("copy", "torch", "f32", [copy_bytes // 4], time_cuda(lambda s: dst.copy_(s), [src], args.samples), 2 * copy_bytes, None, device))
    del src, dst

    torch.backends.cuda.matmul.allow_tf32 = False
    size = 4096
    a, b = torch.randn(size, size, device=dev), torch.randn(size, size, device=dev)
    mm = row("matmul", "torch-cublas", "f32", [size, size, size], time_cuda(lambda x: torch.mm(x, b), [a], args.samples), 0, None, device, "TF32 off")
    mm["gflops"] = 2 * size**3 / (mm["medianMs"] / 1000) / 1e9
    rows_out.append(mm)
    del a, b

    m = 2048
    for k, n in ((896, 4864), (4864, 896)):
        x, w = torch.randn(m, k, device=dev), torch.randn(n, k, device=dev)
        lin = row("linear", "torch-cublas", "f32", [m, k, n], time_cuda(lambda t: t @ w.T, [x], args.samples), 0, None, device, "x @ W.T, TF32 off")
        lin["gflops"] = 2 * m * k * n / (lin["medianMs"] / 1000) / 1e9
        rows_out.append(lin)
    B, T, H, KV, D = 8, 2048, 14, 2, 64
    q = torch.randn(B, H, T, D, device=dev)
    kv = [torch.randn(B, KV, T, D, device=dev).repeat_interleave(H // KV, dim=1) for _ in range(2)]
    sdpa = lambda t: torch.nn.functional.scaled_dot_product_attention(t, kv[0], kv[1], is_causal=True)
    att = row("attention", "torch-sdpa", "f32", [B, T, H, KV, D], time_cuda(sdpa, [q], args.samples), 0, None, device, "causal, GQA by repeated K/V")
    att["gflops"] = 2 * 2 * B * H * D * (T * (T + 1) / 2) / (att["medianMs"] / 1000) / 1e9
    rows_out.append(att)
    del q, kv

    compiled = torch.compile(eager, dynamic=True)
    for dtype_name in args.dtypes.split(","):
        dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[dtype_name]
        for n in [int(r) for r in args.rows.split(",")]:
            base = (2 * torch.randn(n, VOCAB, device=dev)).to(dtype)
            ids = torch.randint(0, VOCAB, (n,), device=dev)
            nbytes = base.numel() * base.element_size()
            count = max(2, min(64, math.ceil(ROTATION_BYTES / nbytes)))
            inputs = [base.clone() for _ in range(count)]
            shape = [n, VOCAB]
            # The compiled and eager functions must agree before either is timed.
            ref = eager(inputs[0], ids, 1.0)
            got = compiled(inputs[0], ids, 1.0)
            for a, b in zip(ref, got):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
            for backend, fn in (
                ("torch-eager", lambda x: eager(x, ids, 1.0)),
                ("torch-logsoftmax", lambda x: log_softmax_style(x, ids, 1.0)),
                ("torch-compile", lambda x: compiled(x, ids, 1.0)),
            ):
                samples = time_cuda(fn, inputs, args.samples)
                rows_out.append(row("token_stats_forward", backend, dtype_name, shape, samples, nbytes, n, device, f"{count} rotated inputs"))
                print(f"{backend} N={n} {dtype_name}: {statistics.median(samples):.4f} ms", flush=True)
            del inputs, base
            torch.cuda.empty_cache()

    with open(args.json, "w") as f:
        json.dump({"rows": rows_out}, f, indent=1)


if __name__ == "__main__":
    main()
