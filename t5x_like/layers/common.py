"""Parameter creation with logical axis names, dtypes and small shared helpers."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

# Shardings come from the logical names through explicit jit out_shardings (see
# t5x_like/train/state.py), never from variables placed eagerly at creation time.
nnx.use_eager_sharding(False)

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def dtype_of(name: str):
  return DTYPES[name]


def param(rngs: nnx.Rngs, shape: Sequence[int], axes: Sequence[str | None], *, std: float = 0.02,
          init: str = "normal", dtype=jnp.float32) -> nnx.Param:
  """A parameter carrying its logical axis names as `out_sharding` metadata."""
  if len(shape) != len(axes):
    raise ValueError(f"shape {tuple(shape)} and logical axes {tuple(axes)} differ in rank")
  if init == "normal":
    value = std * jax.random.normal(rngs.params(), tuple(shape), dtype)
  elif init == "zeros":
    value = jnp.zeros(tuple(shape), dtype)
  elif init == "ones":
    value = jnp.ones(tuple(shape), dtype)
  else:
    raise ValueError(f"unknown init {init!r}")
  return nnx.Param(value, out_sharding=tuple(axes))


def dense(x: jax.Array, w: jax.Array, contract: int = 1) -> jax.Array:
  """`x`'s last `contract` axes times `w`'s first ones, computed as one 2-D matmul
  [rows, k] @ [k, outputs]: the einsum "btd,df->btf" (or "btnh,nhd->btd" with contract=2).

  The same numbers as the einsum, but its gradient differs in form: the einsum's weight
  gradient contracts two axes (batch and length), which XLA CPU lays out with transposing
  copies fused with the layer's saved activations, while the 2-D form's is a plain matmul.
  Measured on 2 cores, whole train steps: t5_4+4x256 1,896 -> 1,202 ms, decoder_4x256
  568 -> 507 ms (docs/benchmarks.md, "Projections as 2-D matmuls")."""
  lead, k = x.shape[:x.ndim - contract], math.prod(x.shape[x.ndim - contract:])
  out = w.shape[contract:]
  y = jnp.dot(x.reshape(-1, k), w.reshape(k, -1))
  return y.reshape(*lead, *out)


# The name the remat policies save dropout's keep masks under (layers/transformer.py).
DROPOUT_KEEP = "dropout_keep"


def keep_mask(rng: jax.Array, rate: float, shape: tuple[int, ...]) -> tuple[jax.Array, float]:
  """(boolean mask of `shape`, each True with probability about 1 - `rate`; that
  probability exactly). Each 32 random bits decide two elements, 16 bits each, so the
  generator does half the work of `jax.random.bernoulli` (a float per element); the
  probability is a multiple of 2^-16, within 8e-6 of 1 - rate."""
  threshold = min(max(round((1.0 - rate) * 65536), 1), 65536)
  last = shape[-1] if shape else 1
  bits = jax.random.bits(rng, (*shape[:-1], (last + 1) // 2), jnp.uint32)
  halves = jnp.concatenate([bits & 0xFFFF, bits >> 16], axis=-1)[..., :last]
  return (halves < threshold).reshape(shape), threshold / 65536


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
  """Inverted dropout; identity when rate is 0 or no rng is given (evaluation). The keep
  mask is named DROPOUT_KEEP so that a rematerialised layer saves it (1 byte an element)
  instead of running the generator again in the backward pass."""
  if rate <= 0.0 or rng is None:
    return x
  keep, p = keep_mask(rng, rate, x.shape)
  keep = checkpoint_name(keep, DROPOUT_KEEP)
  return jnp.where(keep, x * jnp.asarray(1.0 / p, x.dtype), jnp.zeros_like(x))


def split_rng(rng: jax.Array | None, n: int):
  if rng is None:
    return (None,) * n
  return tuple(jax.random.split(rng, n))
