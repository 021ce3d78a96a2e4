"""Generation benchmark: greedy tokens/s with the KV cache and without it (the uncached
reference re-runs the whole model over a fixed buffer for every new token, as decoding
did before t5x_like/decoding/), for the tiny decoder (configs/tiny/gpt.py) and the
GPT-2-small shape (configs/models/gpt.py), random weights.

  python scripts/bench_generate.py                       # both models, batch 1, 256 new tokens
  python scripts/bench_generate.py --models tiny --batch 8 --dtype bfloat16

Each path is compiled ahead of time (the compile time is printed apart), then timed
over `--repeats` runs after one warm-up; rows never stop early (no EOS), so every run
generates exactly batch x new tokens. The two paths must return the same tokens.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from t5x_like import config as C  # noqa: E402
from t5x_like import features as F  # noqa: E402
from t5x_like.decoding.generate import DecodeOptions, generate  # noqa: E402
from t5x_like.models import create_model  # noqa: E402


def model_config(name: str) -> C.ModelConfig:
  if name == "tiny":
    return C.load_config_file(os.path.join(ROOT, "configs", "tiny", "gpt.py")).model
  return C.load_model_preset(os.path.join(ROOT, "configs", "models", "gpt.py"), "gpt2_small")


def random_model(cfg: C.ModelConfig, seed: int = 0):
  """Normal(0, init_std) weights (norm scales 1), made on the device in one jitted call:
  the model's eager init would compile every parameter's initialiser on its own."""
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: create_model(cfg, nnx.Rngs(0))))
  pure = nnx.to_pure_dict(abstract)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(pure)

  @jax.jit
  def make(key):
    keys = jax.random.split(key, len(leaves))
    out = []
    for k, (path, leaf) in zip(keys, leaves, strict=True):
      value = cfg.init_std * jax.random.normal(k, leaf.shape, jnp.float32)
      out.append(value + 1.0 if path[-1].key == "scale" else value)
    return jax.tree_util.tree_unflatten(treedef, out)

  nnx.replace_by_pure_dict(abstract, make(jax.random.key(seed)))
  return graphdef, abstract, sum(int(np.prod(leaf.shape)) for _, leaf in leaves)


def bench(name: str, a) -> None:
  cfg = model_config(name)
  cfg.dtype, cfg.dropout_rate = a.dtype, 0.0
  graphdef, params, n_params = random_model(cfg)
  rng = np.random.default_rng(0)
  batch = {F.PROMPT_TOKENS: jnp.asarray(rng.integers(3, cfg.vocab_size, (a.batch, a.prompt_len)), jnp.int32),
           F.PROMPT_LENGTHS: jnp.full((a.batch,), a.prompt_len, jnp.int32)}
  options = DecodeOptions(max_new_tokens=a.new_tokens, eos_id=-1)
  device = jax.devices()[0]
  print(f"\n== {name}: {cfg.num_layers} layers x d_model {cfg.d_model}, {cfg.num_heads} heads "
        f"({cfg.num_kv_heads or cfg.num_heads} kv), d_ff {cfg.d_ff}, vocab {cfg.vocab_size}, "
        f"{cfg.position} positions, {n_params:,} params")
  print(f"   batch {a.batch}, prompt {a.prompt_len} (+ BOS), {a.new_tokens} new tokens, {a.dtype}, "
        f"{device.platform} ({device.device_kind}), {jax.device_count()} device(s), 1 used")
  results = {}
  for cached in (True, False):
    fn = jax.jit(lambda p, b, cached=cached: generate(nnx.merge(graphdef, p), b, options, cached=cached).tokens)
    t0 = time.perf_counter()
    compiled = fn.lower(params, batch).compile()
    compile_s = time.perf_counter() - t0
    tokens = jax.block_until_ready(compiled(params, batch))  # warm-up
    times = []
    for _ in range(a.repeats if cached else a.uncached_repeats):
      t0 = time.perf_counter()
      jax.block_until_ready(compiled(params, batch))
      times.append(time.perf_counter() - t0)
    run_s = min(times)
    rate = a.batch * a.new_tokens / run_s
    results[cached] = (np.asarray(tokens), rate)
    label = "cached  " if cached else "uncached"
    print(f"   {label}: compile {compile_s:6.2f} s, generate {run_s:8.3f} s (best of {len(times)}), "
          f"{rate:9.1f} tokens/s, {1e3 * run_s / a.new_tokens:8.2f} ms/token")
  same = np.array_equal(results[True][0], results[False][0])
  print(f"   speed-up {results[True][1] / results[False][1]:.1f}x; same tokens: {same}")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--models", default="tiny,gpt2_small", help="comma-separated: tiny, gpt2_small")
  p.add_argument("--batch", type=int, default=1, help="rows generated together")
  p.add_argument("--prompt-len", type=int, default=16)
  p.add_argument("--new-tokens", type=int, default=256)
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--repeats", type=int, default=3, help="timed runs of the cached path")
  p.add_argument("--uncached-repeats", type=int, default=1, help="timed runs of the (slow) uncached path")
  a = p.parse_args()
  for name in a.models.split(","):
    bench(name.strip(), a)


if __name__ == "__main__":
  main()
