"""Per-device memory of parameters + optimizer state under each rule set, on 8 devices.

  python scripts/bench_sharding.py [--d-model 768 --layers 12 --vocab 32768]

Prints, per rule set and mesh, the bytes one device holds from the array shardings and,
with --compile, XLA's own figures from `compiled.memory_analysis()` for one train step.
The FSDP rows must be at most 1/8 of the replicated row plus 5%.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from t5x_like import config as C  # noqa: E402
from t5x_like.train.setup import make_setup  # noqa: E402
from t5x_like.train.state import count_params, per_device_bytes  # noqa: E402

CASES = [("replicated (dp)", "dp", (8, 1, 1)), ("fsdp", "fsdp", (1, 8, 1)), ("fsdp", "fsdp", (2, 4, 1)),
         ("fsdp_tp", "fsdp_tp", (1, 4, 2)), ("fsdp_tp", "fsdp_tp", (2, 2, 2)), ("tp", "tp", (1, 1, 8))]


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--d-model", type=int, default=768)
  ap.add_argument("--layers", type=int, default=12)
  ap.add_argument("--heads", type=int, default=16)
  ap.add_argument("--vocab", type=int, default=32768)
  ap.add_argument("--compile", action="store_true", help="also compile a train step (slow for big models)")
  args = ap.parse_args()
  cfg = C.Config()
  cfg = C.replace(cfg, model=dict(d_model=args.d_model, num_layers=args.layers, num_heads=args.heads,
                                  d_ff=4 * args.d_model, vocab_size=args.vocab),
                  data=dict(seq_len=128), train=dict(batch_size=8))
  print(f"{'case':<16} {'mesh (d,f,t)':<14} {'params MiB/dev':>15} {'opt MiB/dev':>12} {'total':>10} "
        f"{'vs replicated':>14}" + (f" {'XLA args MiB':>13} {'XLA temp MiB':>13} {'compile s':>10}" if args.compile else ""))
  base = None
  for name, rules, shape in CASES:
    cfg.mesh = C.MeshConfig(data=shape[0], fsdp=shape[1], tensor=shape[2], rules=rules)
    setup = make_setup(cfg)
    p = per_device_bytes(setup.abstract_state["params"]) / 2**20
    o = per_device_bytes(setup.abstract_state["opt_state"]) / 2**20
    base = base or (p + o)
    line = f"{name:<16} {str(shape):<14} {p:>15.1f} {o:>12.1f} {p + o:>10.1f} {(p + o) / base:>13.3f}x"
    if args.compile:
      t = time.time()
      batch = {f.name: jax.ShapeDtypeStruct((8, 128), np.dtype(f.dtype), sharding=setup.batch_sharding)
               for f in setup.model_class.contract.features if f.required}
      compiled = setup.train_step.lower(setup.abstract_state, batch, jax.random.key(0)).compile()
      ma = compiled.memory_analysis()
      line += (f" {ma.argument_size_in_bytes / 2**20:>13.1f} {ma.temp_size_in_bytes / 2**20:>13.1f}"
               f" {time.time() - t:>10.1f}")
    print(line, flush=True)
  print(f"model: {count_params(setup.abstract_params):,} parameters, fp32 params + AdamW (2 moments)")


if __name__ == "__main__":
  main()
