#!/usr/bin/env bash
# The four CPU shapes of issue 16, each timed by `t5x-like bench --compare-torch`: our
# float32 AdamW training step and the Hugging Face PyTorch model of the same family and
# shape, one after the other on all cores, random full-length rows, dropout off.
#
#   scripts/bench_matrix.sh                  # rows go to ./bench_matrix/ (or $OUT)
#   PYTHON=.venv/bin/python STEPS=5 scripts/bench_matrix.sh
#
# bench.jsonl holds one JSON row per shape; table.md the markdown table that
# docs/benchmarks.md quotes (with the date, machine and versions); log.txt everything.
# Run it on a quiet machine: both sides share the cores with anything else running.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench_matrix}
STEPS=${STEPS:-10}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
[ -n "${KEEP:-}" ] || rm -f "$OUT/bench.jsonl"  # KEEP=1 adds to the rows of an earlier run
LOG="$OUT/log.txt"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3

shape() {  # NAME ARGS...
  local name=$1
  shift
  [ -z "$ONLY" ] || [ "$ONLY" = "$name" ] || return 0
  echo "== $name: t5x-like bench $*" | tee -a "$LOG"
  $PY -m t5x_like.cli bench --compare-torch --name "$name" --steps "$STEPS" --json "$OUT/bench.jsonl" "$@" 2>&1 \
    | grep -v "^W0000\|^I0000\|^E0000" | tail -n 14 | tee -a "$LOG"
  [ "${PIPESTATUS[0]}" = 0 ] || echo "!! $name failed" | tee -a "$LOG"
}

ONLY=${ONLY:-}  # e.g. ONLY=t5_4+4x256 runs one shape
SMALL="--config.model.num_layers=4 --config.model.d_model=256 --config.model.num_heads=4 --config.model.d_ff=1024 --config.model.vocab_size=8192"
# shellcheck disable=SC2086
{
  shape decoder_4x256 --preset gpt:gpt2_small --batch 8 --seq 256 $SMALL
  shape gpt2_small --preset gpt:gpt2_small --batch 4 --seq 512 --config.model.vocab_size=32768
  shape bert_4x256 --preset bert:bert_base --batch 8 --seq 256 $SMALL
  shape t5_4+4x256 --preset t5:t5_v1_1_small --batch 8 --seq 256 --targets 256 $SMALL \
    --config.model.num_decoder_layers=4 --config.model.head_dim=64
}

$PY - "$OUT" <<'PY' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(line) for line in open(f"{sys.argv[1]}/bench.jsonl")]
print("| shape | params | batch x length | ours: step | tokens/s | MFU | PyTorch model: step | speed-up |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
  rows_ = f"{r['batch']} x {r['seq']}" + (f" + {r['targets']}" if r["targets"] else "")
  print(f"| {r['name']} ({r['family']}) | {r['params'] / 1e6:.1f}M | {rows_} | {r['step_ms']:.0f} ms "
        f"| {r['tokens_per_s']:,.0f} | {100 * r['mfu']:.0f}% | {r['torch_model']}: {r['torch_step_ms']:.0f} ms "
        f"| {r['speedup_vs_torch']:.2f}x |")
if rows:
  heap = rows[0].get("host_heap", "?")
  print(f"\nMFU against {rows[0]['mfu_peak']}; jax {rows[0]['jax']}, torch {rows[0]['torch']}; "
        f"host heap {heap} (both sides).")
PY
