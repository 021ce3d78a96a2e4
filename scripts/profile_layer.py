"""Where one transformer layer's backward pass spends its time, on this machine: each part
of a layer timed forward and forward + backward (gradients of the parameters and of the
input), with the ratio of the two. Forward + backward costs 3x the forward when the time
is in matmuls (each forward matmul becomes two in the backward); a part above 3x spends
its backward elsewhere. Also counts the optimised HLO's transposes and copies, the layout
changes a backward pass may add.

  python scripts/profile_layer.py                       # GPT-2-style layer, 8 x 256, d 256
  python scripts/profile_layer.py --preset llama:llama_1b --batch 1 --seq 512 --d-model 512
  python scripts/profile_layer.py --dump /tmp/hlo       # the optimised HLO of each part
  python scripts/profile_layer.py --trace               # per-op times of the whole layer

Parts: the whole layer (layers/transformer.py:Block), its attention and MLP sub-layers
(each with its norm and residual), the attention core (jax.nn.dot_product_attention, and
layers/attention.py:chunked_attention, the layer's own on CPU), one dense matmul of the
MLP's shape (as a [b, t, d] einsum and as the layers' 2-D matmul), and an independent
numpy-style layer written here with jax.numpy (same shapes, explicit softmax attention,
tanh GELU, matmuls on [b, t, d]): when it shows the same
ratio, the cost is XLA's, not the layer code's. `--trace` runs the whole layer's forward
and forward + backward under `jax.profiler` and prints the time per kind of XLA op and the
slowest ops with their operand shapes (`t5x_like/train/opprofile.py`, which `t5x-like
bench --trace N` uses for the whole train step).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# Before JAX reads its configuration: keeps JAX off an absent TPU, whose profiler plugin
# crashes jax.profiler on a CPU-only machine with libtpu installed (the test extra).
import t5x_like  # noqa: E402, F401


def _median_ms(fn, args, repeats: int) -> float:
  import jax

  jax.block_until_ready(fn(*args))  # compile and warm up
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append((time.perf_counter() - t0) * 1e3)
  return statistics.median(times)


def _hlo_counts(fn, args) -> dict:
  text = fn.lower(*args).compile().as_text()
  return {op: len(re.findall(rf"= \S+ {op}\(", text)) for op in ("transpose", "copy", "dot", "fusion")}, text


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--preset", default="gpt:gpt2_small", help="MODULE:NAME of configs/models")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--seq", type=int, default=256)
  p.add_argument("--d-model", type=int, default=256)
  p.add_argument("--heads", type=int, default=4)
  p.add_argument("--d-ff", type=int, default=1024)
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--dump", default="", help="write each part's optimised HLO here")
  p.add_argument("--json", default="", help="append the rows as JSON lines here")
  p.add_argument("--trace", action="store_true", help="per-op times of the whole layer from a profiler trace")
  a = p.parse_args(argv)

  import jax
  import jax.numpy as jnp
  from flax import nnx

  from t5x_like import host_memory
  from t5x_like.config import load_model_preset
  from t5x_like.layers.attention import chunked_attention
  from t5x_like.layers.common import dense
  from t5x_like.layers.transformer import Block
  from t5x_like.train import opprofile

  module, name = a.preset.split(":")
  cfg = load_model_preset(os.path.join(ROOT, "configs", "models", f"{module}.py"), name)
  cfg.d_model, cfg.num_heads, cfg.d_ff, cfg.head_dim, cfg.dropout_rate = a.d_model, a.heads, a.d_ff, 0, 0.0
  if cfg.num_kv_heads:
    cfg.num_kv_heads = a.heads
  b, t, d, f = a.batch, a.seq, a.d_model, a.d_ff
  h = d // a.heads
  block = Block(cfg, causal=True, cross=False, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(block, nnx.Param)
  key = jax.random.PRNGKey(0)
  x = jax.random.normal(key, (b, t, d), jnp.float32)
  positions = jnp.broadcast_to(jnp.arange(t), (b, t))
  mask = jnp.broadcast_to(jnp.tril(jnp.ones((t, t), bool)), (b, 1, t, t))
  ctx = {"self_mask": mask, "positions": positions, "mask_is_causal": True}

  def layer(p, x):
    return nnx.merge(graphdef, p)(x, ctx)

  def attention_sublayer(p, x):
    m = nnx.merge(graphdef, p)
    rope = cfg.rope_theta if cfg.position == "rope" else None
    return m._residual(x, m.self_attn_norm, lambda y: m.self_attn(
        y, mask_b1ts=mask, q_positions_bt=positions, k_positions_bs=positions, rope_theta=rope,
        is_causal=True), None)

  def mlp_sublayer(p, x):
    m = nnx.merge(graphdef, p)
    return m._residual(x, m.mlp_norm, m.mlp, None)

  q = jax.random.normal(key, (b, t, a.heads, h), jnp.float32)

  def attention_core(qkv, _):
    return jax.nn.dot_product_attention(qkv[0], qkv[1], qkv[2], mask=mask, is_causal=True)

  def chunked_core(qkv, _):
    return chunked_attention(qkv[0], qkv[1], qkv[2], mask=mask, scale=h ** -0.5, is_causal=True)

  w = jax.random.normal(key, (d, f), jnp.float32) * 0.02

  def matmul(w, x):
    return jnp.einsum("btd,df->btf", x, w)

  def matmul_2d(w, x):  # how the layers write it (layers/common.py:dense)
    return dense(x, w)

  ks = jax.random.split(key, 6)
  ref = {"ln1": jnp.ones(d), "ln2": jnp.ones(d), "wq": jax.random.normal(ks[0], (d, d)) * 0.02,
         "wk": jax.random.normal(ks[1], (d, d)) * 0.02, "wv": jax.random.normal(ks[2], (d, d)) * 0.02,
         "wo": jax.random.normal(ks[3], (d, d)) * 0.02, "wi": jax.random.normal(ks[4], (d, f)) * 0.02,
         "wf": jax.random.normal(ks[5], (f, d)) * 0.02}

  def reference(r, x):  # pre-norm layer in plain jax.numpy: layer norm, softmax attention, tanh GELU
    def norm(y, g):
      mu = y.mean(-1, keepdims=True)
      return (y - mu) * jax.lax.rsqrt(((y - mu) ** 2).mean(-1, keepdims=True) + 1e-5) * g

    y = norm(x, r["ln1"])
    split = lambda z: z.reshape(b, t, a.heads, h)  # noqa: E731
    qh, kh, vh = split(y @ r["wq"]), split(y @ r["wk"]), split(y @ r["wv"])
    s = jnp.einsum("btnh,bsnh->bnts", qh, kh) * h ** -0.5
    s = jnp.where(mask, s, -1e30)
    o = jnp.einsum("bnts,bsnh->btnh", jax.nn.softmax(s, axis=-1), vh).reshape(b, t, d)
    x = x + o @ r["wo"]
    y = norm(x, r["ln2"])
    return x + jax.nn.gelu(y @ r["wi"], approximate=True) @ r["wf"]

  parts = [("layer", layer, params, x), ("attention sub-layer", attention_sublayer, params, x),
           ("mlp sub-layer", mlp_sublayer, params, x), ("attention core (XLA)", attention_core, (q, q, q), None),
           ("attention core (chunked)", chunked_core, (q, q, q), None),
           (f"matmul {b * t}x{d} @ {d}x{f}, einsum", matmul, w, x),
           (f"matmul {b * t}x{d} @ {d}x{f}, 2-D", matmul_2d, w, x), ("reference layer (jnp)", reference, ref, x)]
  print(f"{jax.devices()[0].device_kind}, {jax.device_count()} device(s), jax {jax.__version__}; "
        f"preset {a.preset} with d_model {d}, {a.heads} heads, d_ff {f}; batch {b} x {t}, float32; "
        f"median of {a.repeats}; host heap {host_memory.host_heap()}")
  print(f"{'part':<34} {'fwd ms':>8} {'fwd+bwd ms':>11} {'ratio':>6}  backward HLO: transposes copies dots fusions")
  rows = []
  for label, fn, p_, x_ in parts:
    # A random cotangent, passed in: with jnp.sum's all-ones one XLA folds the last matmul's
    # backward into a reduction, and a constant one it would transpose at compile time.
    cot = jax.random.normal(jax.random.PRNGKey(1), jax.eval_shape(fn, p_, x_).shape, jnp.float32)

    def loss(p_, x_, cot, fn=fn):
      return jnp.vdot(fn(p_, x_), cot)

    fwd = jax.jit(loss)
    bwd = jax.jit(jax.grad(loss, argnums=(0, 1)) if x_ is not None else jax.grad(loss))
    fwd_ms = _median_ms(fwd, (p_, x_, cot), a.repeats)
    bwd_ms = _median_ms(bwd, (p_, x_, cot), a.repeats)
    counts, text = _hlo_counts(bwd, (p_, x_, cot))
    if a.dump:
      os.makedirs(a.dump, exist_ok=True)
      with open(os.path.join(a.dump, re.sub(r"\W+", "_", label).strip("_") + ".hlo.txt"), "w") as fh:
        fh.write(text)
    rows.append({"part": label, "fwd_ms": fwd_ms, "fwd_bwd_ms": bwd_ms, "ratio": bwd_ms / fwd_ms, **counts})
    print(f"{label:<34} {fwd_ms:>8.2f} {bwd_ms:>11.2f} {bwd_ms / fwd_ms:>5.2f}x  "
          f"{counts['transpose']:>10} {counts['copy']:>6} {counts['dot']:>4} {counts['fusion']:>7}")
  if a.trace:
    cot = jax.random.normal(jax.random.PRNGKey(1), x.shape, jnp.float32)

    def layer_loss(p_, x_, c):
      return jnp.vdot(layer(p_, x_), c)

    for label, fn in (("layer forward", jax.jit(layer_loss)),
                      ("layer forward + backward", jax.jit(jax.grad(layer_loss, argnums=(0, 1))))):
      text = fn.lower(params, x, cot).compile().as_text()
      wall, ops = opprofile.trace_ops(fn, (params, x, cot), a.repeats, text)
      print("\n" + opprofile.format_ops(label, wall, ops, text))
  if a.json:
    with open(a.json, "a") as fh:
      for r in rows:
        fh.write(json.dumps({"preset": a.preset, "batch": b, "seq": t, "d_model": d, "d_ff": f, **r}) + "\n")
  return 0


if __name__ == "__main__":
  from t5x_like.host_memory import reexec_with_host_heap
  reexec_with_host_heap()  # as the t5x-like command does (T5X_LIKE_HOST_HEAP=system: not)
  raise SystemExit(main())
