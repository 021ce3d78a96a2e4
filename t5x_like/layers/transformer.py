"""Transformer blocks and a scanned, rematerialised stack shared by all model families."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from t5x_like.config import ModelConfig
from t5x_like.layers.attention import Attention
from t5x_like.layers.common import dropout, split_rng
from t5x_like.layers.mlp import Mlp
from t5x_like.layers.norms import Norm
from t5x_like.layers.positions import rope_scaling_of
from t5x_like.runtime import shard

ACTIVATION_AXES = ("batch", "length", "embed")

_REMAT = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


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
        rope_scaling=rope_scaling_of(self.cfg)), r_attn)
    if self.cross:
      x_btd = self._residual(x_btd, self.cross_attn_norm, lambda y: self.cross_attn(
          y, ctx["encoded"], mask_b1ts=ctx["cross_mask"]), r_cross)
    x_btd = self._residual(x_btd, self.mlp_norm, self.mlp, r_mlp)
    return shard(x_btd, ACTIVATION_AXES)


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

    if self.cfg.remat_policy != "none":
      layer = jax.checkpoint(layer, policy=_REMAT[self.cfg.remat_policy], prevent_cse=not self.cfg.scan_layers)
    idx = jnp.arange(self.num_layers)
    if self.cfg.scan_layers:
      x_btd, _ = jax.lax.scan(layer, x_btd, (params, idx))
    else:
      for i in range(self.num_layers):
        x_btd, _ = layer(x_btd, (jax.tree.map(lambda a, i=i: a[i], params), idx[i]))
    return x_btd
