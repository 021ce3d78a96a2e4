"""The model protocol shared by every family: `loss`, `score` and `predict`.

The trainer, evaluator and decoder call only these, so they never branch on the family.
Batches are dicts of `[batch, length]` arrays named like T5X features:
`{encoder,decoder}_{input_tokens,target_tokens,segment_ids,positions,loss_weights}`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from t5x_like.config import ModelConfig


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
  correct_bt = (jnp.argmax(logits, axis=-1) == targets_bt).astype(jnp.float32)
  aux = {
      "nll_sum": jnp.sum(nll_bt * weights),
      "z_loss_sum": jnp.sum(z_bt * weights),
      "correct_sum": jnp.sum(correct_bt * weights),
      "weight_sum": jnp.sum(weights),
  }
  return aux["nll_sum"] + aux["z_loss_sum"], aux


class LanguageModel(nnx.Module):
  """Base class; a family sets `target_prefix` and implements `__call__` -> logits."""

  target_prefix = "decoder"  # which features hold the targets and loss weights

  def __init__(self, cfg: ModelConfig):
    self.cfg = cfg

  def __call__(self, batch: dict, rng: jax.Array | None = None) -> jax.Array:
    raise NotImplementedError

  def loss(self, batch: dict, rng: jax.Array | None = None) -> tuple[jax.Array, dict]:
    logits = self(batch, rng)
    p = self.target_prefix
    return cross_entropy(logits, batch[f"{p}_target_tokens"], batch[f"{p}_loss_weights"],
                         self.cfg.z_loss)

  def score(self, batch: dict) -> jax.Array:
    """Log-likelihood of each row's weighted targets, `[batch]` (rows hold one sequence)."""
    logits = self(batch).astype(jnp.float32)
    p = self.target_prefix
    logp = jax.nn.log_softmax(logits, axis=-1)
    tok_bt = jnp.take_along_axis(logp, batch[f"{p}_target_tokens"][..., None], axis=-1)[..., 0]
    return jnp.sum(tok_bt * batch[f"{p}_loss_weights"], axis=-1)

  def predict(self, batch: dict, **kwargs) -> jax.Array:
    raise NotImplementedError
