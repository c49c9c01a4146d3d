#!/usr/bin/env bash
# One GPU-machine session (see ../shared/device/README.md): NVIDIA correctness checks, then the
# PyTorch peers and intuitor's benchmarks on the same card, in one command. Run through
#   bash .device/remote.sh bash bench/device-session.sh
# with the fixtures in devfixtures/. Everything lands in $OUT; the last lines are a short table.
# An argument picks phases (check, peers, bench; default all) so a session can split them over calls.
# The phases' timeouts add up to 470 s, so that the whole run fits issue 16's 8 minutes.
set -u
PHASES=${1:-check,peers,bench}
has() { [[ ",$PHASES," == *",$1,"* ]]; }
export INTUITOR_FIXTURES=${INTUITOR_FIXTURES:-$PWD/devfixtures/}
OUT=${OUT:-/tmp/intuitor-device}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, importlib.util as u; print('torch', torch.__version__, 'transformers', u.find_spec('transformers') is not None)" | tee -a "$OUT/gpu.txt"

# 1. Correctness on NVIDIA: fixture logits, greedy generation, gradients vs transformers' float64.
if has check; then
  timeout 70 node --require ./test/quick-exit.cjs --experimental-vm-modules node_modules/jest/bin/jest.js dist/test/model/training.test.js dist/test/model/policy.test.js dist/test/model/generate.test.js \
    dist/test/ops/attention.test.js dist/test/ops/linear.test.js dist/test/ops/linear-norm.test.js dist/test/ops/kv-cache.test.js dist/test/ops/token-stats.test.js \
    dist/test/model/logits-chunks.test.js dist/test/ops/lm-head-stats.test.js > "$OUT/jest.txt" 2>&1
  echo "jest exit $?" | tee -a "$OUT/jest.txt"
  grep -E "^(Tests|Test Suites):|✕" "$OUT/jest.txt"
  # A checkpoint intuitor wrote (devfixtures/sft-checkpoint, made by `intuitor sft` on the fixture) loads in transformers unchanged.
  if [ -d devfixtures/sft-checkpoint ]; then
    timeout 20 python3 bench/peers/check_checkpoint.py devfixtures/sft-checkpoint devfixtures/tiny-qwen2/ref_input_ids.npy devfixtures/sft-checkpoint-logits/logits.npy 2>&1 | tail -1 | tee "$OUT/checkpoint.txt"
  fi
fi

# 2. Peers on the same card (their JSON stays in $OUT for the bench phase). torch_policy.py also
#    times the scoring peer (HF forward + log_softmax + the statistics, f32 and bf16) for score_completions.
if has peers; then
  timeout 120 python3 bench/peers/torch_policy.py --json "$OUT/torch_policy.json" > "$OUT/torch_policy.txt" 2>&1; echo "torch_policy exit $?"; tail -3 "$OUT/torch_policy.txt"
  timeout 40 python3 bench/peers/torch_token_stats.py --rows 8,2048 --dtypes f32,bf16 --samples 10 --json "$OUT/torch_token_stats.json" > "$OUT/torch_token_stats.txt" 2>&1; echo "torch_token_stats exit $?"; tail -3 "$OUT/torch_token_stats.txt"
fi
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = []
for name in ("torch_policy.json", "torch_token_stats.json"):
    path = os.path.join(out, name)
    if os.path.exists(path):
        rows += json.load(open(path))["rows"]
json.dump({"rows": rows}, open(os.path.join(out, "peers.json"), "w"))
print("peer rows", len(rows))
PY

# 3. intuitor's benchmarks, ratios against the peers measured above (PEERS may point at an earlier phase's file).
if has bench; then
  # The card's clocks, power and throttle reasons every 100 ms beside the samples (rows keep
  # samplesMs in order): an earlier run had one kernel 2x slower for whole passes, unexplained.
  CLOCK_FIELDS=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,pstate,clocks_event_reasons.active
  nvidia-smi --query-gpu=$CLOCK_FIELDS --format=csv -c 1 > /dev/null 2>&1 || CLOCK_FIELDS=${CLOCK_FIELDS/clocks_event_reasons/clocks_throttle_reasons}
  nvidia-smi --query-gpu=$CLOCK_FIELDS --format=csv -lms 100 > "$OUT/clocks.csv" 2>&1 &
  CLOCK_LOG=$!
  # Every suite but serve (a loopback load test of the HTTP layer, measured on the CPU machine).
  # lm_head_stats: 4 runs at 8 × 512 × 896 × 151,936 with inputs made once (about 40 s, estimated).
  KERNELS=token_stats_forward,token_stats_backward,linear,linear_decode,attention,train_step,decode,score_completions,lm_head_stats
  timeout 220 node bin/intuitor.js bench --kernels "$KERNELS" --backends webgpu --rows 8,2048 --dtypes f32,bf16 \
    --peers "${PEERS:-$OUT/peers.json}" --profile --json "$OUT/bench.json" --markdown "$OUT/bench.md" > "$OUT/bench.txt" 2>&1
  echo "bench exit $?"; tail -5 "$OUT/bench.txt"
  kill $CLOCK_LOG 2> /dev/null
  echo "clock samples $(wc -l < "$OUT/clocks.csv"); SM MHz min/max $(cut -d, -f2 "$OUT/clocks.csv" | grep -o '[0-9]*' | sort -n | sed -n '1p;$p' | paste -sd/)"
  grep -E "^\| (token_stats|linear|attention|train_step|decode|score_completions|matmul)" "$OUT/bench.md" | cut -c1-240
  # The issue's row: fused lm_head + statistics forward, 8 × 512 rows, V = 151,936 (webgpu/fused)
  # should take ≤ the unfused path's time (its "webgpu/unfused" ratio ≥ 1) with a peak memory lower
  # by the logits' size (8 × 512 × 151,936 f32 = 2.3 GiB; the notes give both peaks).
  grep -E "^\| lm_head_stats" "$OUT/bench.md" | cut -c1-400
fi
