"""Task heads of the encoder family and their losses, as token-style sums (`nll_sum`,
`correct_sum`, `weight_sum`) so the trainer divides once by the batch's total weight:

- classify: the row's pooled states -> pooler (dense + tanh, as BERT) -> `num_labels`
  logits; weight 1 per real row. Sequence and sentence-pair classification.
- tag: a `num_labels` projection of every token's state; the targets are tag ids on the
  first piece of each word (weights 1 there). Token classification.
- nsp: BERT's next-sentence head (a classify head with 2 classes) beside the MLM head.
- embed: the pooled states of segment 1 and segment 2 of each row, L2-normalised, trained
  with InfoNCE over in-batch negatives (Oord et al. 2018; SimCSE, Gao et al. 2021).

Extra metrics leave through `aux["extra"]`: {name: [numerator, denominator]}, summed over
micro-batches and hosts like the other sums, then divided once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from t5x_like.layers.common import dense, param


def pool(x_btd: jax.Array, segments_bt: jax.Array, segment: int, how: str) -> jax.Array:
  """`[b, d]`: the mean of the states of segment `segment` of each row, or its first
  state. A row without that segment gives zeros (mean) or its position 0 (first)."""
  in_seg = (segments_bt == segment).astype(jnp.float32)
  if how == "first":
    first_b = jnp.argmax(in_seg, axis=1)
    return jnp.take_along_axis(x_btd, first_b[:, None, None], axis=1)[:, 0]
  total = jnp.einsum("btd,bt->bd", x_btd.astype(jnp.float32), in_seg)
  return total / jnp.maximum(jnp.sum(in_seg, axis=1, keepdims=True), 1.0)


class ClassifierHead(nnx.Module):
  """Pooler (dense d x d + tanh) then a `num_classes` projection with bias."""

  def __init__(self, d: int, num_classes: int, *, std: float, rngs: nnx.Rngs):
    self.pooler = param(rngs, (d, d), ("embed", "mlp"), std=std)
    self.pooler_bias = param(rngs, (d,), ("mlp",), init="zeros")
    self.kernel = param(rngs, (d, num_classes), ("embed", None), std=std)
    self.bias = param(rngs, (num_classes,), (None,), init="zeros")

  def __call__(self, pooled_bd: jax.Array) -> jax.Array:
    dt = pooled_bd.dtype
    h_bd = jnp.tanh(pooled_bd @ self.pooler[...].astype(dt) + self.pooler_bias[...].astype(dt))
    return (h_bd @ self.kernel[...].astype(dt) + self.bias[...].astype(dt)).astype(jnp.float32)


class TagHead(nnx.Module):
  """A `num_tags` projection with bias of every token's state."""

  def __init__(self, d: int, num_tags: int, *, std: float, rngs: nnx.Rngs):
    self.kernel = param(rngs, (d, num_tags), ("embed", None), std=std)
    self.bias = param(rngs, (num_tags,), (None,), init="zeros")

  def __call__(self, x_btd: jax.Array) -> jax.Array:
    dt = x_btd.dtype
    return dense(x_btd, self.kernel[...].astype(dt)) + self.bias[...].astype(dt)


def row_valid(segments_bt: jax.Array) -> jax.Array:
  """1.0 for rows that hold an example (padding rows of an eval batch are all segment 0)."""
  return (jnp.max(segments_bt, axis=1) > 0).astype(jnp.float32)


def classification_loss(logits_bc: jax.Array, labels_b: jax.Array, valid_b: jax.Array) -> dict:
  """Summed cross-entropy and correct count over the valid rows."""
  logits = logits_bc.astype(jnp.float32)
  nll_b = jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, labels_b[:, None], axis=-1)[:, 0]
  correct_b = (jnp.argmax(logits, axis=-1) == labels_b).astype(jnp.float32)
  return {"nll_sum": jnp.sum(nll_b * valid_b), "correct_sum": jnp.sum(correct_b * valid_b),
          "weight_sum": jnp.sum(valid_b)}


def info_nce(anchor_bd: jax.Array, positive_bd: jax.Array, valid_b: jax.Array,
             temperature: float) -> dict:
  """InfoNCE of each valid anchor against its positive, the other valid rows' positives
  being the negatives: -log softmax(cos(a_i, p_.) / temperature)[i], summed; `correct`
  counts anchors whose own positive is the most similar. Under a sharded batch the
  similarity matrix spans the global batch, so every row's negatives come from all hosts."""
  a = anchor_bd.astype(jnp.float32)
  p = positive_bd.astype(jnp.float32)
  a = a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-6)
  p = p / jnp.maximum(jnp.linalg.norm(p, axis=-1, keepdims=True), 1e-6)
  sim_bb = (a @ p.T) / temperature
  sim_bb = jnp.where(valid_b[None, :] > 0, sim_bb, -1e9)  # padding rows are no negatives
  diag_b = jnp.diagonal(sim_bb)
  nll_b = jax.nn.logsumexp(sim_bb, axis=-1) - diag_b
  correct_b = (jnp.argmax(sim_bb, axis=-1) == jnp.arange(sim_bb.shape[0])).astype(jnp.float32)
  return {"nll_sum": jnp.sum(nll_b * valid_b), "correct_sum": jnp.sum(correct_b * valid_b),
          "weight_sum": jnp.sum(valid_b)}


def with_zero_z(aux: dict) -> dict:
  return {**aux, "z_loss_sum": jnp.zeros((), jnp.float32)}


__all__ = ["ClassifierHead", "TagHead", "classification_loss", "info_nce", "pool", "row_valid", "with_zero_z"]
