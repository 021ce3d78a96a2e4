#!/usr/bin/env bash
# Starts N training processes on this machine, connected through jax.distributed on
# 127.0.0.1, each simulating DEVICES CPU devices (default 4). Useful to test multi-host
# behaviour (per-host data shards, one set of logs, multi-process checkpoints) anywhere.
#
#   scripts/launch_local.sh 2 configs/tiny/gpt.py /tmp/t5x_like/mh [--config.x=v ...]
#
# Environment: DEVICES (per process, default 4), PORT (default a free port), T5X_LIKE
# (the command, default `t5x-like`). Logs of process i go to WORKDIR/logs/process_i.log;
# process 0 also prints to the console. Exits non-zero if any process fails.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 NUM_PROCESSES CONFIG WORKDIR [--config.key=value ...]" >&2
  exit 2
fi
n=$1; config=$2; workdir=$3; shift 3
devices=${DEVICES:-4}
port=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
cmd=${T5X_LIKE:-t5x-like}
mkdir -p "$workdir/logs"
pids=()
for ((i = 0; i < n; i++)); do
  log="$workdir/logs/process_$i.log"
  if [ "$i" -eq 0 ]; then
    $cmd train --config "$config" --workdir "$workdir" --coordinator "127.0.0.1:$port" \
      --num-processes "$n" --process-id "$i" --cpu-devices "$devices" "$@" 2>&1 | tee "$log" &
  else
    $cmd train --config "$config" --workdir "$workdir" --coordinator "127.0.0.1:$port" \
      --num-processes "$n" --process-id "$i" --cpu-devices "$devices" "$@" >"$log" 2>&1 &
  fi
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
exit $status
