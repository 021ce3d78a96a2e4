"""Transformer blocks and a scanned, rematerialised stack shared by all model families."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from t5x_like.config import ModelConfig
from t5x_like.layers import kv_cache
from t5x_like.layers.attention import Attention
from t5x_like.layers.common import DROPOUT_KEEP, dropout, split_rng
from t5x_like.layers.mlp import Mlp
from t5x_like.layers.norms import Norm
from t5x_like.layers.positions import rope_scaling_of
from t5x_like.runtime import shard

ACTIVATION_AXES = ("batch", "length", "embed")

# `dots` and `dots_no_batch` also keep dropout's masks (1 byte an element) rather than
# drawing them again in the backward pass; `full` keeps nothing.
_KEEP_MASKS = jax.checkpoint_policies.save_only_these_names(DROPOUT_KEEP)
_REMAT = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.save_from_both_policies(jax.checkpoint_policies.checkpoint_dots, _KEEP_MASKS),
    "dots_no_batch": jax.checkpoint_policies.save_from_both_policies(
        jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims, _KEEP_MASKS),
}


def remat_for(policy: str, platform: str) -> str:
  """`model.remat_policy` made concrete for the devices a step runs on. `auto` is `dots` on
  CPU, where a step is bound by memory traffic and recomputing the elementwise work beats
  saving it (decoder, encoder and encoder-decoder steps 7-19% faster and half the
  temporaries, docs/benchmarks.md), and `none` on GPU and TPU."""
  if policy != "auto":
    return policy
  return "dots" if platform == "cpu" else "none"


def head_dims(cfg: ModelConfig) -> tuple[int, int, int]:
  head_dim = cfg.head_dim or cfg.d_model // cfg.num_heads
  return cfg.num_heads, cfg.num_kv_heads or cfg.num_heads, head_dim


class Block(nnx.Module):
  """One layer: self-attention, optional cross-attention, MLP; pre- or post-norm."""

  def __init__(self, cfg: ModelConfig, *, causal: bool, cross: bool, rngs: nnx.Rngs,
               attention_scale: float | None = None):
    n, k, h = head_dims(cfg)
    self.cfg, self.causal, self.cross = cfg, causal, cross
    if attention_scale is None and cfg.attention_scale:
      attention_scale = cfg.attention_scale
    attn = dict(use_bias=cfg.use_bias, std=cfg.init_std, rngs=rngs, scale=attention_scale,
                implementation=cfg.attention_impl, qkv_bias=cfg.qkv_bias)
    norm = dict(kind=cfg.norm, eps=cfg.norm_eps, rngs=rngs)
    self.self_attn_norm = Norm(cfg.d_model, **norm)
    self.self_attn = Attention(cfg.d_model, n, k, h, **attn)
    if cross:
      self.cross_attn_norm = Norm(cfg.d_model, **norm)
      self.cross_attn = Attention(cfg.d_model, n, k, h, **attn)
    self.mlp_norm = Norm(cfg.d_model, **norm)
    self.mlp = Mlp(cfg.d_model, cfg.d_ff, activation=cfg.mlp_activation, use_bias=cfg.use_bias,
                   std=cfg.init_std, rngs=rngs, exact_gelu=not cfg.gelu_approximate)

  def _residual(self, x, norm, fn, rng):
    rate = self.cfg.dropout_rate
    if self.cfg.norm_position == "pre":
      return x + dropout(fn(norm(x)), rate, rng)
    return norm(x + dropout(fn(x), rate, rng))

  def __call__(self, x_btd, ctx: dict, rng=None):
    r_attn, r_cross, r_mlp = split_rng(rng, 3)
    rope = self.cfg.rope_theta if self.cfg.position == "rope" else None
    x_btd = self._residual(x_btd, self.self_attn_norm, lambda y: self.self_attn(
        y, mask_b1ts=ctx["self_mask"], bias_bnts=ctx.get("self_bias"),
        q_positions_bt=ctx["positions"], k_positions_bs=ctx["positions"], rope_theta=rope,
        rope_scaling=rope_scaling_of(self.cfg), is_causal=ctx.get("mask_is_causal", False)), r_attn)
    if self.cross:
      x_btd = self._residual(x_btd, self.cross_attn_norm, lambda y: self.cross_attn(
          y, ctx["encoded"], mask_b1ts=ctx["cross_mask"]), r_cross)
    x_btd = self._residual(x_btd, self.mlp_norm, self.mlp, r_mlp)
    return shard(x_btd, ACTIVATION_AXES)

  def extend(self, x_btd, ctx: dict, cache: dict):
    """`__call__` for new tokens against this layer's cache (no dropout): their keys and
    values go into `cache` at slots [ctx["cache_index"], +t), and the queries attend to the
    whole cache under ctx["self_mask"]. Cross-attention reads keys and values computed
    once from the encoder output (`cache["cross_k"]`, `cache["cross_v"]`). Returns the
    new states and the updated self-attention cache {"k", "v"}."""
    rope = self.cfg.rope_theta if self.cfg.position == "rope" else None
    updated = {}

    def self_attention(y_btd):
      attn, start_b = self.self_attn, ctx["cache_index"]
      scaling = rope_scaling_of(self.cfg)
      q_btnh = attn.queries(y_btd, ctx["positions"], rope, scaling)
      k_btkh, v_btkh = attn.keys_values(y_btd, ctx["positions"], rope, scaling)
      updated["k"] = kv_cache.write(cache["k"], k_btkh, start_b)
      updated["v"] = kv_cache.write(cache["v"], v_btkh, start_b)
      return attn.attend(q_btnh, updated["k"], updated["v"], mask_b1ts=ctx["self_mask"],
                         bias_bnts=ctx.get("self_bias"))

    x_btd = self._residual(x_btd, self.self_attn_norm, self_attention, None)
    if self.cross:
      x_btd = self._residual(x_btd, self.cross_attn_norm, lambda y: self.cross_attn.attend(
          self.cross_attn.queries(y), cache["cross_k"], cache["cross_v"],
          mask_b1ts=ctx["cross_mask"]), None)
    x_btd = self._residual(x_btd, self.mlp_norm, self.mlp, None)
    return shard(x_btd, ACTIVATION_AXES), updated


class Stack(nnx.Module):
  """`num_layers` blocks whose parameters carry a leading `layers` axis.

  The same parameter tree runs under `jax.lax.scan` (compile time flat in depth) or as an
  unrolled loop, so checkpoints do not depend on `scan_layers`.
  """

  def __init__(self, cfg: ModelConfig, num_layers: int, *, causal: bool, cross: bool,
               rngs: nnx.Rngs, attention_scale: float | None = None):
    self.cfg, self.num_layers = cfg, num_layers

    @nnx.split_rngs(splits=num_layers)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def make(rngs):
      return Block(cfg, causal=causal, cross=cross, rngs=rngs, attention_scale=attention_scale)

    self.blocks = make(rngs)

  def __call__(self, x_btd, ctx: dict, rng=None):
    graphdef, params = nnx.split(self.blocks)

    def layer(x, p_and_i):
      p, i = p_and_i
      r = None if rng is None else jax.random.fold_in(rng, i)
      return nnx.merge(graphdef, p)(x, ctx, r), None

    # `auto` is resolved by make_setup for training; a model built elsewhere (decoding,
    # scoring) takes no gradients, so saving nothing extra is all it needs.
    policy = "none" if self.cfg.remat_policy == "auto" else self.cfg.remat_policy
    if policy != "none":
      layer = jax.checkpoint(layer, policy=_REMAT[policy], prevent_cse=not self.cfg.scan_layers)
    idx = jnp.arange(self.num_layers)
    if self.cfg.scan_layers:
      x_btd, _ = jax.lax.scan(layer, x_btd, (params, idx))
    else:
      for i in range(self.num_layers):
        x_btd, _ = layer(x_btd, (jax.tree.map(lambda a, i=i: a[i], params), idx[i]))
    return x_btd

  # Decoding: the cache of every layer carries the same leading `layers` axis as the
  # parameters, so one scan (or loop) walks parameters and cache together.

  def _over_layers(self, fn, carry, xs):
    """`jax.lax.scan(fn, carry, xs)`, or the same unrolled when `scan_layers` is off."""
    if self.cfg.scan_layers:
      return jax.lax.scan(fn, carry, xs)
    ys = []
    for i in range(self.num_layers):
      carry, y = fn(carry, jax.tree.map(lambda a, i=i: a[i], xs))
      ys.append(y)
    return carry, jax.tree.map(lambda *a: jnp.stack(a), *ys)

  def init_cache(self, batch: int, length: int, dtype) -> dict:
    """An empty self-attention cache of `length` slots per row (layers/kv_cache.py)."""
    _, k, h = head_dims(self.cfg)
    return kv_cache.zeros(self.num_layers, batch, length, k, h, dtype)

  def cross_keys_values(self, encoded_bsd) -> dict:
    """{"cross_k", "cross_v"}: every layer's cross-attention keys and values of the
    encoder output, `[layers, b, s, kv_heads, head_dim]`, computed once per sequence."""
    graphdef, params = nnx.split(self.blocks)

    def layer(carry, p):
      k_bskh, v_bskh = nnx.merge(graphdef, p).cross_attn.keys_values(encoded_bsd)
      return carry, {"cross_k": shard(k_bskh, kv_cache.CACHE_AXES),
                     "cross_v": shard(v_bskh, kv_cache.CACHE_AXES)}

    return self._over_layers(layer, None, params)[1]

  def extend(self, x_btd, ctx: dict, cache: dict):
    """The stack over new tokens with every layer's cache (`Block.extend`); returns the
    states and the updated cache. Only the self-attention part is rewritten; the
    cross-attention keys and values pass through unchanged."""
    graphdef, params = nnx.split(self.blocks)

    def layer(x, p_and_c):
      p, c = p_and_c
      return nnx.merge(graphdef, p).extend(x, ctx, c)

    x_btd, written = self._over_layers(layer, x_btd, (params, cache))
    return x_btd, {**cache, **written}
