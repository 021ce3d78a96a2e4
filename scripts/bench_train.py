"""Training-step benchmark: compile time, step time, tokens/s, MFU and device memory of one
model preset on the devices at hand, with random token batches (no input pipeline, so the
figures are the model's and the sharding's alone; bench_data.py measures the pipeline).

  python scripts/bench_train.py --preset gpt:gpt2_small --batch 16 --seq 1024 \
      --dtype bfloat16 --attention cudnn          # one GPU
  python scripts/bench_train.py --preset bert:bert_tiny --batch 8 --seq 128   # CPU
  python scripts/bench_train.py --preset gpt:gpt2_small --config.model.vocab_size=262144 \
      --batch 8 --seq 256 --loss-chunk 64        # --config.a.b=v overrides the preset

MFU uses the same FLOP count as the training loop (the family's `flops_per_sequence`) and
the device's peak (`train/peak.py`: published, or measured on CPU; or --peak-tflops). Batches
are the family's `fake_batch` (t5x_like/features.py): full rows of random ids.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from t5x_like import config as C  # noqa: E402
from t5x_like.models import family_class  # noqa: E402
from t5x_like.train.peak import device_peak  # noqa: E402
from t5x_like.train.setup import init_state, make_setup  # noqa: E402
from t5x_like.train.state import count_params  # noqa: E402


def preset(spec: str) -> C.ModelConfig:
  module, name = spec.split(":")
  return C.load_model_preset(os.path.join(ROOT, "configs", "models", f"{module}.py"), name)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", default="gpt:gpt2_small", help="MODULE:NAME from configs/models")
  p.add_argument("--batch", type=int, default=16, help="global batch (rows)")
  p.add_argument("--seq", type=int, default=1024, help="input length")
  p.add_argument("--targets", type=int, default=0, help="encoder-decoder target length (0: seq / 4)")
  p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
  p.add_argument("--attention", default="xla", choices=["xla", "cudnn"])
  p.add_argument("--remat", default="none", help="model.remat_policy")
  p.add_argument("--steps", type=int, default=20, help="timed steps after 2 warm-up steps")
  p.add_argument("--mesh", default="-1,1,1", help="data,fsdp,tensor sizes (-1 takes the rest)")
  p.add_argument("--rules", default="fsdp")
  p.add_argument("--peak-tflops", type=float, default=0.0, help="per-device peak for MFU (0: by device kind)")
  p.add_argument("--loss-chunk", type=int, default=0, help="model.loss_chunk (0: whole logits)")
  p.add_argument("--json", default="", help="append the figures as one JSON line to this file")
  a, overrides = p.parse_known_args()

  cfg = C.Config(model=preset(a.preset))
  for key, value in C.parse_overrides(overrides):
    C.apply_override(cfg, key, value)
  model = cfg.model
  model.dtype, model.attention_impl, model.remat_policy = a.dtype, a.attention, a.remat
  model.loss_chunk = a.loss_chunk
  model.max_len = max(model.max_len, a.seq)
  data, fsdp, tensor = (int(x) for x in a.mesh.split(","))
  targets = a.targets or max(a.seq // 4, 8)
  cfg.mesh = C.MeshConfig(data=data, fsdp=fsdp, tensor=tensor, rules=a.rules)
  cfg.data.seq_len, cfg.train.batch_size, cfg.train.steps = a.seq, a.batch, a.steps + 2
  cfg.data.objective = C.objectives_for(model.family)[0]
  contract = family_class(model.family).contract
  dec_len = targets if contract.target_side is not contract.first_side else 0  # separate target rows
  cfg.data.span_corruption.targets_len = dec_len
  C.validate(cfg)

  setup = make_setup(cfg)
  mesh = setup.mesh
  n_params = count_params(setup.abstract_params)
  state = init_state(setup, cfg, 0)
  step = setup.train_step
  batches = [jax.device_put(contract.fake_batch(a.batch, a.seq, dec_len, vocab_size=model.vocab_size, seed=i),
                            setup.batch_sharding) for i in range(2)]
  key = jax.random.key(0)

  with jax.set_mesh(mesh):
    t0 = time.perf_counter()
    compiled = step.lower(state, batches[0], key).compile()
    compile_s = time.perf_counter() - t0
    temp_bytes = compiled.memory_analysis().temp_size_in_bytes
    for i in range(2):  # warm-up
      state, m = compiled(state, batches[i % 2], key)
    jax.block_until_ready(m)
    times = []
    for i in range(a.steps):
      t0 = time.perf_counter()
      state, m = compiled(state, batches[i % 2], key)
      jax.block_until_ready(m)
      times.append(time.perf_counter() - t0)
  step_s = float(np.median(times))
  flops = setup.model_class.flops_per_sequence(model, a.seq, dec_len) * a.batch
  peak_device = device_peak(a.dtype, a.peak_tflops)
  peak = peak_device.flops_per_device * jax.device_count()
  tokens = a.batch * (a.seq + dec_len)
  dev = jax.devices()[0]
  mem = dev.memory_stats() or {}
  print(f"device: {jax.device_count()} x {dev.device_kind} ({dev.platform}), jax {jax.__version__}")
  print(f"model: {a.preset} {model.family}, {n_params / 1e6:.1f}M params, dtype {a.dtype}, "
        f"attention {a.attention}, remat {a.remat}, loss_chunk {a.loss_chunk}; batch {a.batch} x seq {a.seq}"
        + (f" + targets {dec_len}" if dec_len else "") + f"; mesh {dict(mesh.shape)}")
  print(f"compile {compile_s:.1f} s | step {1e3 * step_s:.1f} ms (median of {a.steps}, "
        f"min {1e3 * min(times):.1f}) | {tokens / step_s:,.0f} tokens/s | "
        f"{flops / step_s / 1e12:.1f} TFLOP/s | MFU {100 * flops / step_s / peak:.1f}% | "
        f"loss {float(m['loss']):.3f}")
  print(f"MFU against {peak_device.describe()}")
  print(f"compiled step: {temp_bytes / 2**20:,.0f} MiB of temporaries (XLA memory_analysis)")
  if "peak_bytes_in_use" in mem:
    print(f"device memory: peak {mem['peak_bytes_in_use'] / 2**30:.2f} GiB of "
          f"{mem.get('bytes_limit', 0) / 2**30:.1f} GiB")
  if a.json:
    row = {"preset": a.preset, "family": model.family, "params": n_params, "dtype": a.dtype,
           "attention": a.attention, "remat": a.remat, "loss_chunk": a.loss_chunk, "batch": a.batch, "seq": a.seq, "targets": dec_len,
           "device": f"{jax.device_count()} x {dev.device_kind}", "jax": jax.__version__,
           "compile_s": round(compile_s, 2), "step_ms": round(1e3 * step_s, 2),
           "step_ms_spread": round(1e3 * (max(times) - min(times)), 2),
           "tokens_per_s": round(tokens / step_s), "tflops": round(flops / step_s / 1e12, 2),
           "mfu": round(flops / step_s / peak, 4), "peak": peak_device.describe(),
           "peak_memory_gib": round(mem.get("peak_bytes_in_use", 0) / 2**30, 2),
           "temp_mib": round(temp_bytes / 2**20, 1), "loss": float(m["loss"])}
    with open(a.json, "a") as f:
      f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
  main()
