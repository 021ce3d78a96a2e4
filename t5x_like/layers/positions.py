"""Position encodings: rotary (RoPE), learned absolute, and T5's bucketed relative bias."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from t5x_like.layers.common import param


def apply_rope(x_btnh: jax.Array, positions_bt: jax.Array, theta: float = 10_000.0) -> jax.Array:
  """Rotates pairs (x[i], x[i + h/2]) by angle pos * theta^(-2i/h) (the "half" layout).

  Positions come from the batch, so packed documents each start at angle 0.
  """
  h = x_btnh.shape[-1]
  inv_freq = theta ** (-jnp.arange(0, h, 2, dtype=jnp.float32) / h)  # [h/2]
  angles_bth = positions_bt[..., None].astype(jnp.float32) * inv_freq  # [b, t, h/2]
  sin, cos = jnp.sin(angles_bth)[:, :, None, :], jnp.cos(angles_bth)[:, :, None, :]
  x = x_btnh.astype(jnp.float32)
  x1, x2 = x[..., : h // 2], x[..., h // 2:]
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_btnh.dtype)


class LearnedPositions(nnx.Module):
  def __init__(self, max_len: int, dim: int, *, std: float = 0.02, rngs: nnx.Rngs):
    self.table = param(rngs, (max_len, dim), (None, "embed"), std=std)

  def __call__(self, positions_bt: jax.Array) -> jax.Array:
    return jnp.take(self.table[...], positions_bt, axis=0)


def relative_position_bucket(relative_position: jax.Array, *, bidirectional: bool,
                             num_buckets: int, max_distance: int) -> jax.Array:
  """T5's bucketing: exact buckets for small distances, log-spaced up to max_distance.

  `relative_position` is key_position - query_position.
  """
  ret = jnp.zeros_like(relative_position)
  n = -relative_position
  if bidirectional:
    num_buckets //= 2
    ret = ret + (n < 0).astype(jnp.int32) * num_buckets
    n = jnp.abs(n)
  else:
    n = jnp.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  val_if_large = max_exact + (
      jnp.log(n.astype(jnp.float32) / max_exact + jnp.finfo(jnp.float32).eps)
      / math.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(jnp.int32)
  val_if_large = jnp.minimum(val_if_large, num_buckets - 1)
  return ret + jnp.where(is_small, n, val_if_large)


class RelativePositionBias(nnx.Module):
  """A learned scalar per (bucket, head), added to the attention logits of every layer."""

  def __init__(self, num_heads: int, *, num_buckets: int, max_distance: int, bidirectional: bool,
               std: float = 0.02, rngs: nnx.Rngs):
    self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional
    self.table = param(rngs, (num_buckets, num_heads), (None, "heads"), std=std)

  def __call__(self, q_positions_bt: jax.Array, k_positions_bs: jax.Array) -> jax.Array:
    rel_bts = k_positions_bs[:, None, :] - q_positions_bt[:, :, None]
    buckets = relative_position_bucket(rel_bts, bidirectional=self.bidirectional,
                                       num_buckets=self.num_buckets, max_distance=self.max_distance)
    bias_btsn = jnp.take(self.table[...], buckets, axis=0)
    return jnp.transpose(bias_btsn, (0, 3, 1, 2)).astype(jnp.float32)  # [b, n, t, s]
