"""SIGTERM mid-run: the run saves the current step, exits 0, and a rerun continues exactly."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

SMALL = ["--config.model.d_model=64", "--config.model.num_layers=2", "--config.model.d_ff=128",
         "--config.data.seq_len=64", "--config.data.synthetic_train_docs=2000", "--config.data.synthetic_eval_docs=200",
         "--config.train.batch_size=8", "--config.train.log_every=1", "--config.train.eval_every=0",
         "--config.train.eval_batches=1", "--config.train.skill_eval_examples=0",
         "--config.checkpoint.every_steps=1000", "--config.train.steps=40"]


def _cmd(wd):
  return [sys.executable, "-m", "t5x_like.cli", "train", "--config", "configs/tiny/gpt.py", "--workdir", str(wd), *SMALL]


def _losses(wd):
  rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
  return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.mark.slow  # 100 s; the SIGINT final-eval stop and the SIGKILL resume tests stay fast
def test_sigterm_saves_and_resume_matches(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  straight, stopped = tmp_path / "straight", tmp_path / "stopped"
  assert subprocess.run(_cmd(straight), env=env, capture_output=True, timeout=300).returncode == 0

  proc = subprocess.Popen(_cmd(stopped), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  metrics = stopped / "metrics.jsonl"
  deadline = time.time() + 240
  while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  assert "saving step" in out
  saved = sorted(int(s) for s in os.listdir(stopped / "checkpoints") if s.isdigit())
  assert len(saved) == 1 and 3 <= saved[0] < 40

  p = subprocess.run(_cmd(stopped), env=env, capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  assert f"resumed from step {saved[0]}" in p.stdout
  a, b = _losses(straight), _losses(stopped)
  assert [b[s] for s in range(saved[0] + 1, 41)] == [a[s] for s in range(saved[0] + 1, 41)]
