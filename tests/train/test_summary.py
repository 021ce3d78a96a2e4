"""What the summary compares: the train loss is the mean over the last logging window (not
one step's), and the unigram baseline is computed on exactly the eval tokens the eval loss
covers (checked against a numpy recount of those tokens)."""

import json
import math
import os

import numpy as np
import pytest
from checkpoint_runs import column, small_cfg  # tests/train/checkpoint_runs.py

from t5x_like.data import pipeline, tokenizer
from t5x_like.train.loop import run

pytestmark = pytest.mark.usefixtures("cache_dir")  # tests/train/conftest.py


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data, cache_dir):
  """Two runs of the same 9 steps, logging every step and every 3 steps; the second also
  evaluates 2 batches (the unigram baseline's tokens)."""
  root = tmp_path_factory.mktemp("summary")
  every = run(small_cfg(9, data, checkpoint=dict(enabled=False)), str(root / "every"))
  cfg = small_cfg(9, data, checkpoint=dict(enabled=False), train=dict(log_every=3, eval_batches=2))
  windows = run(cfg, str(root / "w"))
  return root, every, windows, cfg


def test_train_loss_is_the_window_mean(runs):
  root, every, windows, _ = runs
  step_losses = column(root / "every")  # log_every=1: each step's loss (the same steps, bit for bit)
  avg = column(root / "w", "train_loss_avg")
  for end in (3, 6, 9):
    assert avg[end] == pytest.approx(np.mean([step_losses[s] for s in range(end - 2, end + 1)]), rel=1e-6)
  assert windows["final_train_loss"] == pytest.approx(avg[9]) and every["final_train_loss"] == step_losses[9]
  # MFU is against a peak measured on this CPU (no published figure exists), and says so.
  assert windows["peak_source"].startswith("measured: 2048x2048 float32 matmul")
  mfu = column(root / "w", "mfu")[9]
  assert 0 < mfu < 1.5


def test_unigram_baseline_is_computed_on_the_eval_tokens(runs, data):
  root, _, summary, cfg = runs
  tok = tokenizer.Tokenizer(data["tokenizer_path"])
  corpus = data["corpus_dir"]
  # The eval batches the trainer read: the same pipeline call, the first eval_batches.
  ds = pipeline.make_dataset(cfg.data, files=os.path.join(corpus, "eval-*.txt"), tokenizer_path=tok.path,
                             batch_size=cfg.train.batch_size, shuffle=False, repeat=False)
  counts = np.zeros(cfg.model.vocab_size)
  for b in list(ds.as_numpy_iterator())[:2]:
    w = b["decoder_loss_weights"] > 0
    np.add.at(counts, b["decoder_target_tokens"][w], 1.0)
  train = np.zeros(cfg.model.vocab_size)
  n = 0
  for path in sorted(__import__("glob").glob(os.path.join(corpus, "train-*.txt"))):
    for line in open(path):
      if line.strip() and n < 5000:
        np.add.at(train, tok.encode(line.strip()) + [tok.eos_id], 1.0)
        n += 1
  log_p = np.log(train + 1) - math.log(train.sum() + train.size)
  want = -(counts * log_p).sum() / counts.sum()
  assert summary["eval_tokens"] == counts.sum()
  assert summary["unigram_loss"] == pytest.approx(want, rel=1e-9)
  assert json.load(open(root / "w" / "summary.json"))["unigram_loss"] == summary["unigram_loss"]
