"""The training loss: token cross-entropy as sums, whole, over chunks of the length axis, or
over the scored positions only.

The chunked form exists for large vocabularies: fp32 logits of `[batch, length, vocab]`
(8 x 2048 x 128k is 8.4 GB) dominate a step's memory although each position's logits are
needed only for a moment. Chunking makes and reduces `[batch, chunk, vocab]` at a time and
recomputes it in the backward pass, for one extra head matmul per step.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from t5x_like.runtime import shard


def cross_entropy(logits_btv: jax.Array, targets_bt: jax.Array, weights_bt: jax.Array,
                  z_loss: float = 0.0) -> tuple[jax.Array, dict]:
  """Summed (not averaged) weighted token cross-entropy in float32, plus counters.

  Sums let gradient accumulation and data parallelism divide once by the total weight,
  so a step's loss does not depend on how the batch was split.
  """
  logits = logits_btv.astype(jnp.float32)
  log_z_bt = jax.nn.logsumexp(logits, axis=-1)
  target_logit_bt = jnp.take_along_axis(logits, targets_bt[..., None], axis=-1)[..., 0]
  nll_bt = log_z_bt - target_logit_bt
  weights = weights_bt.astype(jnp.float32)
  z_bt = z_loss * jnp.square(log_z_bt)
  # Correct when the target's logit is above every other logit: argmax == target, except
  # that a tie for the top counts as wrong (all-equal logits, as from a zero-initialised
  # head, score 0 rather than 1). Tested as "no other logit reaches the target's", a
  # compare and a boolean any, where argmax is a (value, index) reduce that XLA CPU runs
  # unvectorised (28 ms of a 700 ms step at V 8192, measured). XLA CPU writes the
  # comparison out before reducing it; as booleans that is a quarter of the bytes of the
  # int32 count this replaced (9 against 15 ms of the decoder_4x256 step, measured).
  vocab_v = jax.lax.broadcasted_iota(targets_bt.dtype, logits.shape[-1:], 0)
  rival_bt = jnp.any(~(logits < target_logit_bt[..., None]) & (vocab_v != targets_bt[..., None]), axis=-1)
  correct_bt = (~rival_bt).astype(jnp.float32)  # every other logit strictly below (a NaN anywhere: wrong)
  aux = {
      "nll_sum": jnp.sum(nll_bt * weights),
      "z_loss_sum": jnp.sum(z_bt * weights),
      "correct_sum": jnp.sum(correct_bt * weights),
      "weight_sum": jnp.sum(weights),
  }
  return aux["nll_sum"] + aux["z_loss_sum"], aux


def chunked_cross_entropy(head: Callable[[jax.Array], jax.Array], x_btd: jax.Array,
                          targets_bt: jax.Array, weights_bt: jax.Array, z_loss: float = 0.0,
                          chunk: int = 512, skip_unscored: bool = False) -> tuple[jax.Array, dict]:
  """`cross_entropy(head(x_btd), ...)` computed `chunk` positions of the length axis at a time.

  The batch axis stays whole, so every chunk keeps the activations' batch sharding. The
  length is padded to a multiple of the chunk with zero-weight positions, which add nothing
  to any sum. `jax.checkpoint` around a chunk keeps only its inputs for the backward pass.
  `skip_unscored`: a chunk where no row has a nonzero weight is skipped (`lax.cond`: zero
  sums, no head matmul, no backward).
  """
  b, t = targets_bt.shape
  c = min(chunk, t)
  n = -(-t // c)
  pad = n * c - t
  if pad:
    x_btd = jnp.pad(x_btd, ((0, 0), (0, pad), (0, 0)))
    targets_bt = jnp.pad(targets_bt, ((0, 0), (0, pad)))
    weights_bt = jnp.pad(weights_bt, ((0, 0), (0, pad)))

  def chunks(a):  # [b, n * c, ...] -> [n, b, c, ...]
    return jnp.moveaxis(a.reshape(b, n, c, *a.shape[2:]), 1, 0)

  x_nbcd = shard(chunks(x_btd), (None, "batch", "length", "embed"))

  @jax.checkpoint
  def one(xs):
    x_bcd, targets_bc, weights_bc = xs
    if not skip_unscored:
      return cross_entropy(head(x_bcd), targets_bc, weights_bc, z_loss)[1]
    zeros = {k: jnp.zeros((), jnp.float32) for k in ("nll_sum", "z_loss_sum", "correct_sum", "weight_sum")}
    return jax.lax.cond(jnp.any(weights_bc != 0),
                        lambda: cross_entropy(head(x_bcd), targets_bc, weights_bc, z_loss)[1],
                        lambda: zeros)

  sums_n = jax.lax.map(one, (x_nbcd, chunks(targets_bt), chunks(weights_bt)))
  aux = {k: jnp.sum(v) for k, v in sums_n.items()}
  return aux["nll_sum"] + aux["z_loss_sum"], aux


def scored_cross_entropy(head: Callable[[jax.Array], jax.Array], x_btd: jax.Array,
                         targets_bt: jax.Array, weights_bt: jax.Array, z_loss: float = 0.0,
                         chunk: int = 32) -> tuple[jax.Array, dict]:
  """`cross_entropy(head(x_btd), ...)` with the head run only where it can count: for a
  masked LM, which scores about 15% of the positions.

  Each row's positions are reordered (stably) so that those with a nonzero weight come
  first; the reordered rows are cut into chunks of `chunk` positions, and a chunk in which
  no row has a scored position is skipped (`lax.cond`: zero sums, no head matmul, no
  backward). The sums are those of `cross_entropy` over every position, up to the order of
  the float additions, for any weights. The gather keeps the batch axis whole (its
  sharding); only the skip test reduces over it. BERT's own pretraining code gathers a
  fixed number of masked positions per row instead, which needs the data to cap them.
  """
  order_bt = jnp.argsort(weights_bt == 0, axis=1, stable=True)  # scored positions first
  x_btd = jnp.take_along_axis(x_btd, order_bt[..., None], axis=1)
  targets_bt = jnp.take_along_axis(targets_bt, order_bt, axis=1)
  weights_bt = jnp.take_along_axis(weights_bt, order_bt, axis=1)
  return chunked_cross_entropy(head, x_btd, targets_bt, weights_bt, z_loss, chunk, skip_unscored=True)
