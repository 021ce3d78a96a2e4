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
  evaluates 2 batches (the unigram baseline's tokens) and saves step 5 (off its logging grid)."""
  root = tmp_path_factory.mktemp("summary")
  every = run(small_cfg(9, data, checkpoint=dict(enabled=False)), str(root / "every"))
  cfg = small_cfg(9, data, checkpoint=dict(every_steps=5), train=dict(log_every=3, eval_batches=2))
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


def test_a_resumed_run_logs_and_sums_up_what_an_uninterrupted_one_does(runs, data, tmp_path):
  """Stopped at step 5 (a checkpoint inside the logging window 4-6) and resumed: the window
  means at steps 6 and 9, the tokens seen and the final train loss equal the uninterrupted
  run's; the checkpoint counts every step's tokens (not only up to the last log). Rerun
  once more at its last step (as after a stop during the final eval), nothing trains and
  the summary still holds the train loss and the throughput."""
  import dataclasses

  from t5x_like.checkpoint.layout import read_meta

  root, _, straight, cfg = runs
  assert read_meta(str(root / "w" / "checkpoints" / "5"))["tokens_seen"] == 5 * 8 * cfg.data.seq_len
  wd = tmp_path / "resumed"
  run(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, stop_at_step=5)), str(wd))
  meta = read_meta(str(wd / "checkpoints" / "5"))
  assert meta["tokens_seen"] == 5 * cfg.train.batch_size * cfg.data.seq_len
  assert len(meta["train_window"]) == 2  # steps 4 and 5
  resumed = run(cfg, str(wd))
  want, got = column(root / "w", "train_loss_avg"), column(wd, "train_loss_avg")
  assert [got[6], got[9]] == [want[6], want[9]]
  assert column(wd, "tokens_seen")[9] == column(root / "w", "tokens_seen")[9] == 9 * 8 * cfg.data.seq_len
  assert resumed["final_train_loss"] == straight["final_train_loss"]
  again = run(cfg, str(wd))
  assert again["final_train_loss"] == straight["final_train_loss"]
  assert again["tokens_per_s"] and again["mfu"]
