#!/usr/bin/env bash
# GPU check for one NVIDIA H100/H200 (about 7 minutes): bf16 training steps with cuDNN
# attention for the Llama-style 1B, GPT-2 small and T5 v1.1 base presets (tokens/s, MFU
# against the device's published peak, peak memory), the GPT-2 small step with XLA's own
# attention and with remat dots for comparison, and greedy generation with and without the
# KV cache.
#
#   scripts/gpu_check.sh                      # figures go to ./gpu_check/ (or $OUT)
#   PYTHON=.venv/bin/python scripts/gpu_check.sh
#
# Every benchmark runs in its own process under a time limit, so one failure (or a shape
# that does not fit) is reported and the others still run. bench.jsonl holds one JSON row
# per training benchmark (t5x-like bench --json); log.txt holds everything printed.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
LOG="$OUT/log.txt"

say() { echo "$@" | tee -a "$LOG"; }

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  $PY -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__); print(jax.devices())"
} 2>&1 | tee -a "$LOG"

train() {  # NAME TIMEOUT_S ARGS...
  local name=$1 limit=$2
  shift 2
  say "== $name: t5x-like bench $*"
  timeout "$limit" $PY -m t5x_like.cli bench --json "$OUT/bench.jsonl" "$@" 2>&1 | grep -v "^W0000\|^I0000" | tail -n 25 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || say "!! $name failed (exit $rc$([ "$rc" = 124 ] && echo ', time limit'))"
}

train llama_1b_cudnn 150 --preset llama:llama_1b --batch 8 --seq 2048 --dtype bfloat16 --attention cudnn --steps 10
train gpt2_small_cudnn 90 --preset gpt:gpt2_small --batch 16 --seq 1024 --dtype bfloat16 --attention cudnn --steps 20
train gpt2_small_xla 90 --preset gpt:gpt2_small --batch 16 --seq 1024 --dtype bfloat16 --attention xla --steps 20
# remat auto is none on GPUs, unmeasured against dots there (dots is the CPU default, 7-19% faster on CPU)
train gpt2_small_cudnn_dots 90 --preset gpt:gpt2_small --batch 16 --seq 1024 --dtype bfloat16 --attention cudnn \
  --remat dots --steps 20
train t5_base_cudnn 120 --preset t5:t5_v1_1_base --batch 32 --seq 512 --targets 128 --dtype bfloat16 --attention cudnn --steps 10

say "== generation: bench_generate.py (greedy, batch 1, 256 new tokens, bf16)"
timeout 120 $PY scripts/bench_generate.py --models tiny,gpt2_small --new-tokens 256 --dtype bfloat16 \
  2>&1 | grep -v "^W0000\|^I0000" | tee -a "$LOG"
say "== done $(date -u)"
