"""Evaluation on the held-out split (loss, token accuracy, and each family's diagnostic
variants) and the family's skill score. The periodic eval hook and the final eval call
the same functions."""

from __future__ import annotations

import jax
import numpy as np

from t5x_like.config import TASK_OBJECTIVES
from t5x_like.train.feed import Feed, next_batch


def evaluate(setup, params, feed: Feed, max_batches: int, transform=None, check=None,
             histogram: np.ndarray | None = None) -> dict:
  """Mean loss and accuracy over up to `max_batches` eval batches ({} when there are none).
  `check()` runs before each batch (the final eval stops there on a stop request); the
  weighted target ids of this host's batches are added to `histogram` when given."""
  if max_batches <= 0:
    return {}  # train.eval_batches=0: no eval, and no eval pipeline to build
  side = setup.model_class.contract.target_side
  sums = None
  ds = feed.eval_dataset()
  it = iter(ds)
  for _ in range(max_batches):
    if check is not None:
      check()
    try:
      batch = next_batch(it)
    except StopIteration:
      # Every host must run the same number of (collective) eval steps: a host whose
      # share ran out feeds an all-padding batch (loss weight 0) instead of stopping.
      batch = {k: np.zeros(v.shape, v.dtype.as_numpy_dtype) for k, v in ds.element_spec.items()}
    if transform is not None:
      batch = transform(batch)
    if histogram is not None:
      w = batch[side.loss_weights].reshape(-1)
      histogram += np.bincount(batch[side.target_tokens].reshape(-1)[w > 0], weights=w[w > 0],
                               minlength=histogram.size)[:histogram.size]
    aux = jax.device_get(setup.eval_step(params, feed.global_batch(batch)))
    sums = aux if sums is None else jax.tree.map(np.add, sums, aux)
  if not sums or sums["weight_sum"] == 0:
    return {}
  extra = {f"eval_{name}": float(v[0] / max(v[1], 1.0)) for name, v in sums.get("extra", {}).items()}
  return {"eval_loss": float(sums["nll_sum"] / sums["weight_sum"]),
          "eval_accuracy": float(sums["correct_sum"] / sums["weight_sum"]),
          "eval_tokens": float(sums["weight_sum"]), **extra}


def final_evaluation(setup, params, feed: Feed, max_batches: int, check=None, unigram=None) -> dict:
  """The eval metrics plus the family's variants (`eval_variants`), each as its loss, and
  `unigram_loss`: the loss of the unigram log-probabilities `unigram` on the same tokens."""
  histogram = None if unigram is None else np.zeros(unigram.size, np.float64)
  out = evaluate(setup, params, feed, max_batches, check=check, histogram=histogram)
  if out and histogram is not None:
    if jax.process_count() > 1:  # the eval loss covers every host's batches: so does the baseline
      from jax.experimental import multihost_utils

      histogram = np.asarray(multihost_utils.process_allgather(histogram)).sum(axis=0)
    from t5x_like.data.unigram import unigram_loss

    out["unigram_loss"] = unigram_loss(unigram, histogram)
  if out:
    for name, transform in setup.model_class.eval_variants().items():
      variant = evaluate(setup, params, feed, max_batches, transform=transform, check=check)
      if variant:
        out[name] = variant["eval_loss"]
  return out


def skill_score(cfg, setup, params, tokenizer_path: str) -> dict:
  """The family's skill score on `train.skill_eval_examples` held-out problems ({} when
  disabled, or when the data is not the built-in corpus: fine-tuning tasks report their
  own metrics, `train/task_eval.py`)."""
  n = cfg.train.skill_eval_examples
  if n <= 0 or cfg.data.source != "synthetic" or cfg.data.objective in TASK_OBJECTIVES or cfg.model.head != "lm":
    return {}
  from flax import nnx

  from t5x_like.data import synthetic, tokenizer

  def predict(batch: dict, **kwargs) -> np.ndarray:
    @jax.jit
    def run(params, batch):
      return nnx.merge(setup.graphdef, nnx.State(params)).predict(batch, **kwargs)

    with jax.set_mesh(setup.mesh):
      return np.asarray(jax.device_get(run(params, batch)))

  tok = tokenizer.Tokenizer(tokenizer_path)
  return setup.model_class.skill(cfg, predict, tok, synthetic.skill_examples(n, seed=cfg.data.seed + 1))
