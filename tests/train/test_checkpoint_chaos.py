"""Chaos: a run killed with SIGKILL at 10 random moments (often inside an async save), with
one random file of one random complete step garbled between two restarts. With
skip_corrupt the run finishes; every restart resumes from the newest step it should (none
lost), and every step's loss equals a straight run's bit for bit (resumes and the replay
after the garbled step are exact)."""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from checkpoint_runs import column, small_overrides  # tests/train/checkpoint_runs.py

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("cache_dir")]  # about 3 minutes
STEPS = 40


def _cmd(wd, data, *extra):
  return [sys.executable, "-m", "t5x_like.cli", "train", "--config", "configs/tiny/gpt.py", "--workdir", str(wd),
          *small_overrides(data), f"--config.train.steps={STEPS}", "--config.checkpoint.every_steps=2",
          "--config.checkpoint.max_to_keep=3", *extra]


def _complete(wd):
  d = wd / "checkpoints"
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if d.exists() else []


def _garble(step_dir, rng):
  """4 KiB of random bytes inside one file the restore reads (array data, metadata, iterator)."""
  files = sorted(p for p in step_dir.rglob("*") if p.is_file() and (
      p.parent.name == "d" and p.parent.parent.name == "state" or p.name == "metadata"
      or p.name.startswith("process_")))
  path = rng.choice(files)
  size = path.stat().st_size
  with open(path, "r+b") as f:
    f.seek(rng.randrange(max(size - 16, 1)))
    f.write(bytes(rng.randrange(256) for _ in range(min(4096, size))))
  return path


def test_ten_kills_and_a_garbled_step_lose_nothing(tmp_path, data):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  straight = tmp_path / "straight"
  assert subprocess.run(_cmd(straight, data), env=env, capture_output=True, timeout=600).returncode == 0
  want = column(straight)

  rng = random.Random(1234)
  wd = tmp_path / "chaos"
  expect_resume, garbled = None, None
  for kill in range(10):
    proc = subprocess.Popen(_cmd(wd, data, "--config.checkpoint.skip_corrupt=true"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    target = rng.randrange(2, 12)
    seen, resumed = 0, None
    for line in proc.stdout:
      if line.startswith("[t5x_like] resumed from step"):
        resumed = int(line.split()[4])
      if line.startswith("step "):
        seen += 1
        if seen >= target:
          time.sleep(rng.uniform(0.0, 0.6))  # often inside the async save of an even step
          break
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert resumed == expect_resume, (kill, resumed, expect_resume)
    steps = _complete(wd)
    if kill == 5 and len(steps) >= 2:  # garble the newest complete step: the next start skips it
      garbled = steps[-1]
      _garble(wd / "checkpoints" / str(garbled), rng)
      steps = steps[:-1]
    expect_resume = steps[-1] if steps else None
  p = subprocess.run(_cmd(wd, data, "--config.checkpoint.skip_corrupt=true"), env=env, capture_output=True,
                     text=True, timeout=600)
  assert p.returncode == 0, p.stdout[-3000:]
  assert f"resumed from step {expect_resume}" in p.stdout
  if garbled is not None:
    assert any(n.startswith(f"{garbled}.corrupt-") for n in os.listdir(wd / "checkpoints"))
  got = column(wd)
  assert sorted(got) == list(range(1, STEPS + 1))
  assert all(np.isfinite(v) for v in got.values())
  assert [got[s] for s in range(1, STEPS + 1)] == [want[s] for s in range(1, STEPS + 1)]
