"""Fine-tuning metrics on the held-out examples, by objective, every `train.eval_every`
steps and at the end (`TaskEvalHook`):

- classification: `task_accuracy`, `task_macro_f1`;
- tagging: `task_span_f1` (and precision, recall) over BIO spans, `task_tag_accuracy` per word;
- seq2seq, completion: `task_exact_match` of the greedy output against the target;
- pairs: `task_retrieval_accuracy` (the share of anchors whose own positive is
  the most similar of the batch's positives) and `task_positive_margin` (mean cosine of
  the positive pairs minus the mean cosine of the other pairs).

The outputs and the labels they are compared with come back replicated from one jitted
call over the global batch, so every process computes the same figures.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from t5x_like import features as F
from t5x_like.config import Config
from t5x_like.train import task_metrics as M
from t5x_like.train.feed import Feed, next_batch
from t5x_like.train.hooks import Hook, Run

# Not `contrastive`: its held-out rows hold the same text twice and, without dropout, two
# equal views; score a SimCSE-trained encoder on given pairs (objective `pairs`) instead.
OBJECTIVES = ("classification", "tagging", "seq2seq", "completion", "pairs")


def _outputs(cfg: Config, setup, max_new: int, eos: int):
  """The jitted (params, batch) -> what the objective's metrics read, replicated."""
  from t5x_like.decoding.generate import DecodeOptions, generate

  objective = cfg.data.objective
  options = DecodeOptions(max_new_tokens=max_new, eos_id=eos)

  def run(params, batch):
    model = nnx.merge(setup.graphdef, nnx.State(params))
    if objective == "classification":
      return model.predict(batch), batch[F.ENCODER_CLASS_LABELS][:, 0], batch[F.ENCODER_SEGMENT_IDS][:, 0]
    if objective == "tagging":
      return model.predict(batch), batch[F.ENCODER_TARGET_TOKENS], batch[F.ENCODER_LOSS_WEIGHTS]
    if objective == "pairs":
      return model.predict(batch), batch[F.ENCODER_SEGMENT_IDS][:, 0]
    if objective == "seq2seq":
      enc = {k: v for k, v in batch.items() if F.ENCODER.owns(k)}
      return generate(model, enc, options).tokens, batch[F.DECODER_TARGET_TOKENS], batch[F.DECODER_SEGMENT_IDS][:, 0]
    # completion: the prompt is the unscored start of each row
    targets, weights = batch[F.DECODER_TARGET_TOKENS], batch[F.DECODER_LOSS_WEIGHTS]
    in_prompt = (batch[F.DECODER_SEGMENT_IDS] > 0) & (weights == 0)
    prompts = {F.PROMPT_TOKENS: jnp.where(in_prompt, targets, 0),
               F.PROMPT_LENGTHS: jnp.sum(in_prompt, axis=1).astype(jnp.int32)}
    return generate(model, prompts, options).tokens, jnp.where(weights > 0, targets, 0), prompts[F.PROMPT_LENGTHS]

  replicated = NamedSharding(setup.mesh, PartitionSpec())
  return jax.jit(run, in_shardings=(setup.param_shardings, setup.batch_sharding), out_shardings=replicated)


def _text(tok, ids) -> str:
  return tok.decode([i for i in ids.tolist() if i != 0])


def task_evaluation(cfg: Config, setup, params, feed: Feed, tokenizer_path: str, check=None) -> dict:
  """The objective's metrics over up to `train.eval_batches` eval batches ({} for other objectives)."""
  objective = cfg.data.objective
  if objective not in OBJECTIVES or cfg.train.eval_batches <= 0:
    return {}
  from t5x_like.data.objectives import sentinels
  from t5x_like.data.tokenizer import Tokenizer

  tok = Tokenizer(tokenizer_path, sentinels(cfg.data))
  max_new = cfg.data.task.targets_len or min(cfg.data.seq_len, 32)
  # One jitted function per setup: periodic evals reuse its compilation.
  key = (cfg.data.objective, max_new, tok.eos_id)
  cache = setup.__dict__.setdefault("_task_eval_fns", {})
  fn = cache[key] = cache.get(key) or _outputs(cfg, setup, max_new, tok.eos_id)
  labels = cfg.data.task.labels or [str(i) for i in range(cfg.model.num_labels)]
  conf = np.zeros((max(cfg.model.num_labels, 1),) * 2, np.int64)
  spans, tags, matches, n = np.zeros(3, np.int64), np.zeros(2, np.int64), 0, 0
  retrieved, pos, neg = 0, [], []
  it = iter(feed.eval_dataset())
  for _ in range(cfg.train.eval_batches):
    if check is not None:
      check()
    try:
      batch = next_batch(it)
    except StopIteration:
      break  # every process reads the same count of eval batches (examples are split evenly)
    with jax.set_mesh(setup.mesh):
      out = jax.device_get(fn(params, feed.global_batch(batch)))
    if objective == "classification":
      preds, gold, valid = out
      keep = valid > 0
      conf += M.confusion(gold[keep], preds[keep], conf.shape[0])
    elif objective == "tagging":
      preds, gold, weights = out
      g_rows = [[labels[t] for t in gold[r][weights[r] > 0]] for r in range(len(gold)) if weights[r].any()]
      p_rows = [[labels[t] for t in preds[r][weights[r] > 0]] for r in range(len(gold)) if weights[r].any()]
      spans += M.span_counts(g_rows, p_rows)
      scored = weights > 0
      tags += (int(np.sum((preds == gold) & scored)), int(np.sum(scored)))
    elif objective == "pairs":
      emb, valid = out
      emb = emb[valid > 0]
      sim = emb[:, 0] @ emb[:, 1].T
      retrieved += int(np.sum(np.argmax(sim, axis=1) == np.arange(len(sim))))
      off = ~np.eye(len(sim), dtype=bool)
      pos.append(np.diagonal(sim))
      neg.append(sim[off])
      n += len(sim)
    else:
      generated, gold, valid = out
      rows = [r for r in range(len(gold)) if valid[r] > 0]
      matches += M.exact_matches([_text(tok, generated[r]) for r in rows], [_text(tok, gold[r]) for r in rows])
      n += len(rows)
  if objective == "classification" and conf.sum():
    return {"task_accuracy": M.accuracy(conf), "task_macro_f1": M.macro_f1(conf), "task_examples": float(conf.sum())}
  if objective == "tagging" and tags[1]:
    return {**{f"task_{k}": v for k, v in M.span_f1(spans).items()},
            "task_tag_accuracy": float(tags[0] / tags[1]), "task_gold_spans": float(spans[2])}
  if objective == "pairs" and n:
    return {"task_retrieval_accuracy": retrieved / n,
            "task_positive_margin": float(np.mean(np.concatenate(pos)) - np.mean(np.concatenate(neg))),
            "task_examples": float(n)}
  if objective in ("seq2seq", "completion") and n:
    return {"task_exact_match": matches / n, "task_examples": float(n)}
  return {}


class TaskEvalHook(Hook):
  """The fine-tuning metrics every `every` steps and at the end."""

  def __init__(self, every: int, tokenizer_path: str):
    super().__init__(every)
    self.tokenizer_path = tokenizer_path

  def after_step(self, run: Run, row: dict) -> None:
    row.update(task_evaluation(run.cfg, run.setup, run.state["params"], run.feed, self.tokenizer_path))

  def finish(self, run: Run, final: dict) -> None:
    from t5x_like.train.hooks import _stop_check

    final.update(task_evaluation(run.cfg, run.setup, run.state["params"], run.feed, self.tokenizer_path,
                                 check=_stop_check(run)))


__all__ = ["OBJECTIVES", "TaskEvalHook", "task_evaluation"]
