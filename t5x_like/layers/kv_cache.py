"""The key/value cache of one attention layer, for decoding one token at a time.

Layout: keys and values are `[batch, length, kv_heads, head_dim]` per layer (a stack's
cache adds a leading `layers` axis, like its parameters, so the same `jax.lax.scan`
walks both). Slot j of a row holds the token at position j of that row, so positions,
masks and relative buckets read slot indices directly. A cache is sharded like
activations: batch over the data axes, heads over `tensor` where the rules say so.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from t5x_like.runtime import shard

CACHE_AXES = ("batch", "length", "heads", "kv")
STACKED_CACHE_AXES = ("layers", *CACHE_AXES)


def zeros(num_layers: int, batch: int, length: int, kv_heads: int, head_dim: int, dtype) -> dict:
  """An empty cache for a stack: {"k", "v"} of `[layers, batch, length, kv_heads, head_dim]`.

  Zeros, not garbage: slots past a row's position are masked out of the softmax, but
  their values still meet a zero probability in `probs @ v`, and 0 * NaN would be NaN.
  """
  shape = (num_layers, batch, length, kv_heads, head_dim)
  return {name: shard(jnp.zeros(shape, dtype), STACKED_CACHE_AXES) for name in ("k", "v")}


def write(cache_bskh: jax.Array, new_btkh: jax.Array, start_b: jax.Array) -> jax.Array:
  """`cache` with row i's slots [start_i, start_i + t) replaced by `new[i]`.

  Rows start at different slots (prompts of different lengths), so this is an
  elementwise select over the slots rather than one dynamic slice; every op stays local
  to a row, which keeps a batch-sharded cache where it is.
  """
  s, t = cache_bskh.shape[1], new_btkh.shape[1]
  offset_bs = jnp.arange(s)[None, :] - start_b[:, None]
  inside_bs = (offset_bs >= 0) & (offset_bs < t)
  gathered = jnp.take_along_axis(new_btkh, jnp.clip(offset_bs, 0, t - 1)[:, :, None, None], axis=1)
  out = jnp.where(inside_bs[:, :, None, None], gathered.astype(cache_bskh.dtype), cache_bskh)
  return shard(out, CACHE_AXES)
