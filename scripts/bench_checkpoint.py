"""Checkpoint speed: save and restore of a ~100M-parameter decoder state (params + AdamW
moments), and what an async save in flight costs the step time of a small model.

  python scripts/bench_checkpoint.py [--dir /tmp/bench_ckpt] [--devices 1] [--repeats 2]

Saves go through t5x_like.checkpoint.Checkpointer exactly as training does (the data
iterator aside). "sync save" is checkpoint.async_save=false: the call returns when the step
directory is final. "async save, blocking part" is how long `save()` holds the training
loop before the write continues in the background. Restores read into the same shardings;
a second restore of the same files is served partly from the OS page cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time

_ap = argparse.ArgumentParser()
_ap.add_argument("--dir", default="/tmp/bench_checkpoint")
_ap.add_argument("--devices", type=int, default=1, help="simulated CPU devices (the state is FSDP-sharded over them)")
_ap.add_argument("--d-model", type=int, default=768)
_ap.add_argument("--layers", type=int, default=12)
_ap.add_argument("--d-ff", type=int, default=2048)
_ap.add_argument("--vocab", type=int, default=32768)
_ap.add_argument("--repeats", type=int, default=2)
_ap.add_argument("--small-steps", type=int, default=30, help="steps timed without and with a save in flight")
ARGS = _ap.parse_args()

if "cpu" in os.environ.get("JAX_PLATFORMS", "cpu"):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + f" --xla_force_host_platform_device_count={ARGS.devices}")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from t5x_like import config as C  # noqa: E402
from t5x_like.checkpoint import Checkpointer  # noqa: E402
from t5x_like.train.setup import init_state, make_setup  # noqa: E402
from t5x_like.train.state import count_params  # noqa: E402


def _setup(model: dict, seq_len: int = 128, batch: int = 8):
  cfg = C.replace(C.Config(), model={"num_heads": 12, **model}, data=dict(seq_len=seq_len),
                  train=dict(batch_size=batch, steps=10_000),
                  mesh=dict(data=1, fsdp=-1, tensor=1, rules="fsdp"))
  cfg = C.validate(cfg)
  return cfg, make_setup(cfg)


def _bytes(tree) -> int:
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def _fresh(path: str) -> str:
  shutil.rmtree(path, ignore_errors=True)
  return path


def bench_large():
  cfg, setup = _setup(dict(d_model=ARGS.d_model, num_layers=ARGS.layers, d_ff=ARGS.d_ff, vocab_size=ARGS.vocab))
  state = jax.block_until_ready(init_state(setup, cfg, 0))
  gb = _bytes(state) / 1e9
  print(f"state: {count_params(setup.abstract_params):,} params + AdamW moments = {gb:.2f} GB "
        f"on {jax.device_count()} {jax.devices()[0].platform} device(s); writing to {ARGS.dir}", flush=True)
  rows = []
  for r in range(ARGS.repeats):
    ck = Checkpointer(_fresh(os.path.join(ARGS.dir, f"sync{r}")), C.CheckpointConfig(async_save=False, max_to_keep=1))
    t = time.perf_counter()
    ck.save(1, state, meta={"bench": True})
    ck.wait()
    save_s = time.perf_counter() - t
    ck.close()

    ck = Checkpointer(os.path.join(ARGS.dir, f"sync{r}"), C.CheckpointConfig(max_to_keep=1))
    t = time.perf_counter()
    restored = jax.block_until_ready(ck.restore(1, setup.abstract_state).state)
    restore_s = time.perf_counter() - t
    ck.close()
    assert np.array_equal(np.asarray(restored["params"]["final_norm"]["scale"]),
                          np.asarray(state["params"]["final_norm"]["scale"]))
    del restored

    ck = Checkpointer(_fresh(os.path.join(ARGS.dir, f"async{r}")), C.CheckpointConfig(async_save=True, max_to_keep=1))
    t = time.perf_counter()
    ck.save(1, state, meta={"bench": True})
    blocking_s = time.perf_counter() - t
    ck.wait()
    async_total_s = time.perf_counter() - t
    ck.close()
    rows.append((save_s, restore_s, blocking_s, async_total_s))
    print(f"  run {r + 1}: sync save {save_s:6.2f} s ({gb / save_s:5.2f} GB/s) | restore {restore_s:6.2f} s "
          f"({gb / restore_s:5.2f} GB/s) | async save: blocking {blocking_s:5.2f} s, until final "
          f"{async_total_s:6.2f} s", flush=True)
  shutil.rmtree(ARGS.dir, ignore_errors=True)
  return gb, rows


def _batch(setup, cfg):
  host = setup.model_class.contract.fake_batch(cfg.train.batch_size, cfg.data.seq_len,
                                               vocab_size=cfg.model.vocab_size)
  return {k: jax.device_put(v, setup.batch_sharding) for k, v in host.items()}


def bench_step_overhead():
  """Median step time with no save running vs. steps that overlap an async save (the step
  that starts the save includes save()'s blocking part)."""
  cfg, setup = _setup(dict(d_model=128, num_layers=4, num_heads=4, d_ff=512, vocab_size=4096), seq_len=128)
  state = init_state(setup, cfg, 0)
  step = setup.train_step
  key = jax.random.key(1)
  batch = _batch(setup, cfg)
  for _ in range(3):  # compile and warm up
    state, m = step(state, batch, key)
  jax.block_until_ready(m)

  def timed():
    nonlocal state
    t = time.perf_counter()
    state, m = step(state, batch, key)
    jax.block_until_ready(m)
    return time.perf_counter() - t

  quiet = [timed() for _ in range(ARGS.small_steps)]
  ck = Checkpointer(_fresh(os.path.join(ARGS.dir, "small")), C.CheckpointConfig(async_save=True, max_to_keep=2))
  busy, blocking, s = [], [], 0
  while len(busy) < ARGS.small_steps:
    s += 1
    t = time.perf_counter()
    ck.save(s, state)
    blocking.append(time.perf_counter() - t)
    first = True
    while ck.manager.is_saving_in_progress() or first:
      busy.append(timed() + (blocking[-1] if first else 0.0))
      first = False
  ck.close()
  shutil.rmtree(ARGS.dir, ignore_errors=True)
  gb = _bytes(state) / 1e9
  shape = f"{cfg.train.batch_size} x {cfg.data.seq_len}"
  return count_params(setup.abstract_params), shape, gb, quiet, busy, blocking, s


def main():
  gb, rows = bench_large()
  med = lambda xs: statistics.median(xs)
  save_s, restore_s = med([r[0] for r in rows]), med([r[1] for r in rows])
  print(f"\n~100M-param state ({gb:.2f} GB), median of {len(rows)}: sync save {save_s:.2f} s = "
        f"{gb / save_s:.2f} GB/s; restore {restore_s:.2f} s = {gb / restore_s:.2f} GB/s; async save blocks "
        f"{med([r[2] for r in rows]):.2f} s and is final after {med([r[3] for r in rows]):.2f} s", flush=True)
  n, shape, small_gb, quiet, busy, blocking, saves = bench_step_overhead()
  q, b = med(quiet), med(busy)
  print(f"small model ({n:,} params, {small_gb * 1e3:.0f} MB state, batch {shape}): median step "
        f"{q * 1e3:.1f} ms with no save, {b * 1e3:.1f} ms with an async save in flight "
        f"({100 * (b / q - 1):+.1f}%; {len(busy)} steps over {saves} saves, save() blocks "
        f"{med(blocking) * 1e3:.1f} ms median)")


if __name__ == "__main__":
  main()
