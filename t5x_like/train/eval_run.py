"""`t5x-like eval`: evaluates a run's checkpoints on a split, sharded like training, with the
same evaluation code as the training loop (train/evaluate.py), and writes one row per
checkpoint step to WORKDIR/eval/<split>/metrics.jsonl and TensorBoard.

On the training run's own workdir and split this reproduces the loop's final eval loss
exactly: the same params, the same eval batches, the same compiled eval step.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax

from t5x_like import checkpoint
from t5x_like.config import Config, to_dict
from t5x_like.data.prepare import prepare_data
from t5x_like.errors import CheckpointError, ConfigError
from t5x_like.train.evaluate import final_evaluation
from t5x_like.train.feed import Feed
from t5x_like.train.metrics import MetricsWriter
from t5x_like.train.setup import make_setup
from t5x_like.train.task_eval import task_evaluation

NOT_PER_TOKEN = ("classification", "tagging", "pairs", "contrastive")


def _log(msg: str) -> None:
  if jax.process_index() == 0:
    print(msg, flush=True)


def checkpoints_to_evaluate(workdir: str, path: str, every: bool) -> list[str]:
  """Step directories: `path` (a step or checkpoints directory), or the run's latest step,
  or with `every` each kept step of the run, oldest first."""
  if path:
    if every:
      raise ConfigError("--all-checkpoints evaluates every kept step of --workdir and --checkpoint names one; "
                        "give one of them")
    return [checkpoint.find_step_dir(path, "--checkpoint")]
  directory = os.path.join(workdir, "checkpoints")
  steps = sorted(int(n) for n in os.listdir(directory) if n.isdigit()) if os.path.isdir(directory) else []
  partial = [s for s in steps if not checkpoint.layout.is_step_dir(os.path.join(directory, str(s)))]
  if partial:
    _log(f"[t5x_like] skipping {', '.join(os.path.join(directory, str(s)) for s in partial)}: not a complete "
         "checkpoint (no state/ inside)")
  steps = [s for s in steps if s not in partial]
  if not steps:
    raise CheckpointError(f"no checkpoint in {directory}; train first, or pass --checkpoint PATH")
  return [os.path.join(directory, str(s)) for s in (steps if every else steps[-1:])]


def run_eval(cfg: Config, workdir: str, *, checkpoint_path: str = "", all_checkpoints: bool = False,
             split: str = "eval", batches: int = 0) -> list[dict]:
  """Evaluates each chosen checkpoint; returns (and writes) one row per step."""
  if split not in ("eval", "train"):
    raise ConfigError(f"--split {split!r}: use eval (the held-out split) or train")
  workdir = os.path.abspath(workdir)
  step_dirs = checkpoints_to_evaluate(workdir, checkpoint_path, all_checkpoints)
  n = batches or cfg.train.eval_batches
  if n <= 0:
    raise ConfigError("nothing to evaluate: train.eval_batches is 0; pass --batches N")
  saved = checkpoint.saved_model_config(checkpoint.read_meta(step_dirs[0])) or {}
  if saved.get("family") not in (None, cfg.model.family):
    raise ConfigError(f"{step_dirs[0]} holds a {saved['family']} model but the config is for the "
                      f"{cfg.model.family} family; evaluate it with the config it was trained with (without "
                      f"--config, WORKDIR/config.json is used)")
  setup = make_setup(cfg)
  files = prepare_data(cfg, workdir, _log)
  if split == "train":
    files = dataclasses.replace(files, eval=files.train)
  cfg_n = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, eval_batches=n))
  feed = Feed(cfg_n, files, setup.batch_sharding, train=False)
  # Perplexity is a language model's figure; a classifier's or tagger's loss is over labels.
  per_token = cfg.data.objective not in NOT_PER_TOKEN
  out_dir = os.path.join(workdir, "eval", split)
  writer = MetricsWriter(out_dir)
  rows = []
  try:
    for step_dir in step_dirs:
      try:
        params, fresh = checkpoint.load_params(step_dir, setup.abstract_state["params"], to_dict(cfg)["model"],
                                               key="--checkpoint" if checkpoint_path else "checkpoint")
      except (CheckpointError, ConfigError):
        if all_checkpoints and not checkpoint.layout.is_step_dir(step_dir):
          # Removed since the listing: the run's retention (max_to_keep) while it trains.
          _log(f"[t5x_like] skipping {step_dir}: it was removed while this evaluation ran (the training "
               "run's checkpoint.max_to_keep)")
          continue
        raise
      if fresh:
        raise ConfigError(f"{step_dir} has no {', '.join(fresh)}: it was not trained with model.head="
                          f"{cfg.model.head}; evaluate it with the model config it was trained with")
      step = int(checkpoint.read_meta(step_dir).get("step", os.path.basename(step_dir)))
      row = final_evaluation(setup, params, feed, n)
      if not row:
        raise ConfigError(f"the {split} split yielded no tokens to evaluate")
      if per_token:
        row["eval_perplexity"] = math.exp(min(row["eval_loss"], 700.0))
      # A fine-tune's own metrics (accuracy and F1, span F1, exact match), as training logs them.
      row.update(task_evaluation(cfg_n, setup, params, feed, files.tokenizer))
      writer.write(step, row)
      rows.append({"step": step, "checkpoint": step_dir, **row})
      task = "".join(f" | {k[len('task_'):]} {v:.4f}" for k, v in row.items()
                     if k.startswith("task_") and k not in ("task_examples", "task_gold_spans"))
      ppl = f" | perplexity {row['eval_perplexity']:.3f}" if per_token else ""
      _log(f"[t5x_like] step {step:>7} | {split} loss {row['eval_loss']:.4f}{ppl} | accuracy "
           f"{row['eval_accuracy']:.4f}{task} | {row['eval_tokens']:,.0f} tokens ({step_dir})")
  finally:
    writer.close()
  _log(f"[t5x_like] {len(rows)} row(s) in {writer.path} (TensorBoard: {os.path.join(out_dir, 'tensorboard')})")
  return rows
