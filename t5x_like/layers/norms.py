"""RMSNorm and LayerNorm; statistics are computed in float32 whatever the compute dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from t5x_like.layers.common import param


class Norm(nnx.Module):
  """`kind` is "rmsnorm" (scale only, T5/Llama) or "layernorm" (scale and bias, GPT-2/BERT)."""

  def __init__(self, dim: int, *, kind: str = "rmsnorm", eps: float = 1e-6, rngs: nnx.Rngs):
    self.kind = kind
    self.eps = eps
    self.scale = param(rngs, (dim,), ("embed",), init="ones")
    if kind == "layernorm":
      self.bias = param(rngs, (dim,), ("embed",), init="zeros")

  def __call__(self, x_btd: jax.Array) -> jax.Array:
    x = x_btd.astype(jnp.float32)
    if self.kind == "layernorm":
      mean = x.mean(-1, keepdims=True)
      x = x - mean
      y = x * jax.lax.rsqrt((x * x).mean(-1, keepdims=True) + self.eps)
      y = y * self.scale[...] + self.bias[...]
    else:
      y = x * jax.lax.rsqrt((x * x).mean(-1, keepdims=True) + self.eps) * self.scale[...]
    return y.astype(x_btd.dtype)
