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


def test_a_stop_while_start_up_blocks_raises_at_once():
  """A first batch or a compile blocks in C++, where no Python signal handler runs: the
  start-up waits for them in a worker thread, so a SIGTERM meanwhile stops it at once."""
  import threading

  from t5x_like.train.guards import StopFlag, StopRequested

  assert StopFlag().unless_stopped(lambda: 7, "x") == 7
  with pytest.raises(ValueError, match="invalid literal"):  # the call's own error passes through
    StopFlag().unless_stopped(lambda: int("x"), "x")
  flag, release = StopFlag(), threading.Event()
  flag.install()
  try:
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
    t0 = time.time()
    with pytest.raises(StopRequested, match=r"signal 15 during start-up \(reading\)"):
      flag.unless_stopped(lambda: release.wait(60), "reading")
    assert time.time() - t0 < 10
  finally:
    release.set()
    flag.uninstall()


def test_sigterm_before_the_first_batch_exits_promptly(tmp_path):
  """A shuffle buffer far larger than the corpus keeps the first batch coming for minutes
  (as a large input or a large model's compile does): a SIGTERM then ends the run within
  seconds, exit 0, status "preempted", nothing saved."""
  wd = tmp_path / "wd"
  cmd = [*_cmd(wd), "--config.data.shuffle_buffer=100000000"]
  proc = subprocess.Popen(cmd, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 240
    while time.time() < deadline and not (wd / "config.json").exists() and proc.poll() is None:
      time.sleep(0.2)
    time.sleep(2)  # inside the first batch's shuffle-buffer fill
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
  finally:
    proc.kill()
  assert proc.returncode == 0, err[-2000:]
  assert "signal 15 during start-up (reading the first batch)" in out
  assert "stopped before the first step" in out
  assert json.loads((wd / "status.json").read_text())["status"] == "preempted"
  assert not (wd / "metrics.jsonl").exists() or "loss" not in (wd / "metrics.jsonl").read_text()


def test_sigterm_while_the_tokenizer_trains_exits_at_once(tmp_path):
  """Data preparation (here the SentencePiece tokenizer trained on the built-in corpus;
  minutes on a real corpus) runs under the stop flag too: a SIGTERM ends the run at once,
  exit 0 (not an abort in native code still running), no tokenizer file left behind."""
  wd = tmp_path / "wd"
  # The default corpus: its tokenizer takes a second or more to train.
  cmd = [*_cmd(wd), "--config.data.synthetic_train_docs=20000"]
  proc = subprocess.Popen(cmd, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  try:
    for line in proc.stdout:
      if "training a SentencePiece tokenizer" in line:
        proc.send_signal(signal.SIGTERM)
        break
    t = time.time()
    out, err = proc.communicate(timeout=60)
  finally:
    proc.kill()
  assert proc.returncode == 0, err[-2000:]
  assert time.time() - t < 15
  assert "signal 15 during start-up (preparing the data)" in out
  assert not (wd / "tokenizer" / "spm.model").exists()  # stopped, not waited for
  assert json.loads((wd / "status.json").read_text())["status"] == "preempted"
