"""Feed-forward block: gelu, relu, or the gated variants (SwiGLU, gated GELU)."""

from __future__ import annotations

import jax
from flax import nnx

from t5x_like.layers.common import dense, param

_ACT = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "swiglu": jax.nn.silu,
    "gated_gelu": lambda x: jax.nn.gelu(x, approximate=True),
}


class Mlp(nnx.Module):
  def __init__(self, d_model: int, d_ff: int, *, activation: str, use_bias: bool, std: float,
               rngs: nnx.Rngs, exact_gelu: bool = False):
    self.activation = activation
    self.gated = activation in ("swiglu", "gated_gelu")
    self.exact_gelu = exact_gelu
    self.wi = param(rngs, (d_model, d_ff), ("embed", "mlp"), std=std)
    if self.gated:
      self.wg = param(rngs, (d_model, d_ff), ("embed", "mlp"), std=std)
    self.wo = param(rngs, (d_ff, d_model), ("mlp", "embed"), std=std)
    self.use_bias = use_bias
    if use_bias:
      self.bi = param(rngs, (d_ff,), ("mlp",), init="zeros")
      self.bo = param(rngs, (d_model,), ("embed",), init="zeros")

  def __call__(self, x_btd: jax.Array) -> jax.Array:
    dt = x_btd.dtype
    h_btf = dense(x_btd, self.wi[...].astype(dt))
    if self.use_bias:
      h_btf = h_btf + self.bi[...].astype(dt)
    if self.activation in ("gelu", "gated_gelu") and self.exact_gelu:
      act = jax.nn.gelu(h_btf, approximate=False)
    else:
      act = _ACT[self.activation](h_btf)
    if self.gated:
      act = act * dense(x_btd, self.wg[...].astype(dt))
    out_btd = dense(act, self.wo[...].astype(dt))
    if self.use_bias:
      out_btd = out_btd + self.bo[...].astype(dt)
    return out_btd
