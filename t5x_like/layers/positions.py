"""Position encodings: rotary (RoPE, optionally Llama 3 rescaled), learned absolute, and T5's
bucketed relative bias."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from t5x_like.layers.common import param


class RopeScaling(NamedTuple):
  """Llama 3's RoPE frequency rescaling (`model.rope_scaling="llama3"`)."""

  factor: float  # low frequencies are divided by this
  low_freq_factor: float  # wavelengths above original_max_len / low_freq_factor: fully scaled
  high_freq_factor: float  # wavelengths below original_max_len / high_freq_factor: unchanged
  original_max_len: int  # the context length the model was pretrained at


def rope_scaling_of(cfg) -> RopeScaling | None:
  """The rescaling a ModelConfig asks for, or None for plain RoPE."""
  if cfg.rope_scaling == "none":
    return None
  return RopeScaling(cfg.rope_scaling_factor, cfg.rope_low_freq_factor, cfg.rope_high_freq_factor,
                     cfg.rope_original_max_len)


def rope_frequencies(head_dim: int, theta: float, scaling: RopeScaling | None = None) -> np.ndarray:
  """Angular frequency of each rotated pair, `[head_dim / 2]` float32: theta^(-2i/head_dim).

  With `scaling` (Llama 3.1 onwards; `apply_scaling` in Meta's reference model,
  github.com/meta-llama/llama-models, models/llama3/model.py), a frequency whose wavelength
  2*pi/f exceeds original_max_len / low_freq_factor is divided by `factor`, one whose
  wavelength is below original_max_len / high_freq_factor is kept, and the band between
  blends the two with weight s = (original_max_len / wavelength - low) / (high - low) on the
  unscaled frequency. Static numbers, computed once in float64 and rounded to float32.
  """
  inv_freq = float(theta) ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
  if scaling is not None:
    factor, low, high, context = scaling
    wavelength = 2 * math.pi / inv_freq
    s = (context / wavelength - low) / (high - low)
    blended = (1 - s) * inv_freq / factor + s * inv_freq
    inv_freq = np.where(wavelength < context / high, inv_freq,
                        np.where(wavelength > context / low, inv_freq / factor, blended))
  return inv_freq.astype(np.float32)


def apply_rope(x_btnh: jax.Array, positions_bt: jax.Array, theta: float = 10_000.0,
               scaling: RopeScaling | None = None) -> jax.Array:
  """Rotates pairs (x[i], x[i + h/2]) by angle pos * freq[i] (the "half" layout), with
  freq from `rope_frequencies`.

  Positions come from the batch, so packed documents each start at angle 0.
  """
  h = x_btnh.shape[-1]
  inv_freq = jnp.asarray(rope_frequencies(h, theta, scaling))  # [h/2]
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
