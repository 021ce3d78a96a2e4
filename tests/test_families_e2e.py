"""The encoder (MLM) and encoder-decoder (span corruption) tiny configs end to end through
the CLI: they train, resume exactly, and report a skill score. All of them are marked slow
(45 s to minutes each on 2 cores); the families' steps, losses and packing are checked in
the fast set by tests/models/, and the decoder's resume by tests/train/test_checkpoint_kill.py."""

import json
import os
import subprocess
import sys

import pytest

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
FAST = ["--config.train.log_every=1", "--config.train.eval_every=0", "--config.train.eval_batches=1",
        "--config.train.skill_eval_examples=16", "--config.data.synthetic_train_docs=1500",
        "--config.data.synthetic_eval_docs=100", "--config.checkpoint.every_steps=3"]


def _train(config, workdir, *overrides):
  p = subprocess.run([sys.executable, "-m", "t5x_like.cli", "train", "--config", config,
                      "--workdir", str(workdir), *overrides],
                     capture_output=True, text=True, env=ENV, timeout=1200)
  assert p.returncode == 0, p.stderr[-3000:]
  return p.stdout


def _losses(workdir):
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.mark.slow  # 45-66 s each: whole training runs; the families' steps are tested in tests/models
@pytest.mark.parametrize("config", ["configs/tiny/bert.py", "configs/tiny/t5.py"])
def test_family_trains_and_scores(tmp_path, config):
  """A short CLI run: the loss falls, eval runs, and the summary carries the family's skill."""
  out = _train(config, tmp_path, *FAST, "--config.train.steps=8", "--config.train.batch_size=8",
               "--config.optimizer.warmup_steps=2")
  losses = _losses(tmp_path)
  assert len(losses) == 8 and losses[8] < losses[1]
  summary = json.load(open(tmp_path / "summary.json"))
  assert 0 <= summary["skill_accuracy"] <= 1 and "accuracy" in out
  assert summary["eval_loss"] > 0
  if "t5" in config:  # the encoder-decoder also reports the eval loss with mismatched inputs
    assert summary["eval_loss_other_inputs"] > 0 and "swapped for another row's" in out


@pytest.mark.slow
@pytest.mark.slow  # 45-66 s each: whole training runs; the families' steps are tested in tests/models
@pytest.mark.parametrize("config", ["configs/tiny/bert.py", "configs/tiny/t5.py"])
def test_family_resumes_exactly(tmp_path, config):
  """6 steps straight vs. 3 steps, then the same command again: identical losses."""
  small = FAST + ["--config.train.steps=6", "--config.train.batch_size=8"]
  shared = [f"--config.data.corpus_dir={tmp_path / 'corpus'}",
            f"--config.data.tokenizer_path={tmp_path / 'tok' / 'spm.model'}"]
  _train(config, tmp_path / "straight", *small, *shared)
  straight = _losses(tmp_path / "straight")
  _train(config, tmp_path / "resumed", *small, *shared, "--config.train.stop_at_step=3")
  out_resumed = _train(config, tmp_path / "resumed", *small, *shared)
  assert "resumed from step 3" in out_resumed
  assert _losses(tmp_path / "resumed") == straight and len(straight) == 6


@pytest.mark.slow
def test_tiny_bert_learns_masked_arithmetic(tmp_path):
  _train("configs/tiny/bert.py", tmp_path)
  s = json.load(open(tmp_path / "summary.json"))
  # One masked answer token at a time; the digits alone would give about 1 in 10.
  assert s["eval_loss"] < 0.75 * s["unigram_loss"], s
  assert s["skill_accuracy"] >= 0.35, s


@pytest.mark.slow
def test_tiny_t5_learns_span_filling(tmp_path):
  _train("configs/tiny/t5.py", tmp_path)
  s = json.load(open(tmp_path / "summary.json"))
  # Measured (1500 steps, 323 s): counting-run numbers filled 97.7% of the time, eval loss
  # 0.23x the unigram baseline, 3.08 nats worse with another row's encoder input.
  # Arithmetic answers as a noise span stay rare (4.7%): reported, not asserted.
  assert s["skill_accuracy"] >= 0.75, s
  assert s["eval_loss"] < 0.3 * s["unigram_loss"], s
  assert s["eval_loss_other_inputs"] - s["eval_loss"] > 2.0, s
  assert 0 <= s["arithmetic_fill_accuracy"] <= 1
