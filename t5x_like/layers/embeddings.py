"""Token embedding with an optional tied output projection."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from t5x_like.layers.common import dense, param


class Embed(nnx.Module):
  def __init__(self, vocab_size: int, dim: int, *, std: float = 0.02, rngs: nnx.Rngs):
    self.embedding = param(rngs, (vocab_size, dim), ("vocab", "embed"), std=std)

  def __call__(self, tokens_bt: jax.Array, dtype) -> jax.Array:
    return jnp.take(self.embedding[...].astype(dtype), tokens_bt, axis=0)

  def attend(self, x_btd: jax.Array) -> jax.Array:
    """Logits against the embedding table (the tied output head)."""
    return dense(x_btd, self.embedding[...].astype(x_btd.dtype).T)
