"""Faults around checkpoints that must never cost the last good one: a divergence streak
and the retention that follows it, a missing data-iterator file, a changed batch size or
data config on resume, and stop signals after the last step. In-process runs of the very
small decoder of checkpoint_runs.py (and CLI subprocesses where signals are involved)."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from checkpoint_runs import column, small_cfg, small_overrides  # tests/train/checkpoint_runs.py

from t5x_like import cli
from t5x_like.checkpoint import read_meta
from t5x_like.errors import ConfigError
from t5x_like.train.loop import NonFiniteError, run

pytestmark = pytest.mark.usefixtures("cache_dir")  # tests/train/conftest.py


def _steps(wd):
  return sorted(int(n) for n in os.listdir(wd / "checkpoints") if n.isdigit())


@pytest.fixture(scope="module")
def healthy(tmp_path_factory, data):
  """4 healthy steps, checkpoints at 2 and 4."""
  wd = tmp_path_factory.mktemp("healthy")
  run(small_cfg(4, data), str(wd))
  return wd


def test_divergence_never_costs_the_last_healthy_step(tmp_path, data, healthy):
  """lr 1e30 from step 5: its update makes the params huge, steps 6.. are non-finite and
  skipped. Saves every step with max_to_keep=2 would keep only suspect steps (5 holds the
  update that led into the streak); the newest healthy one (4) is kept too, the message
  names it, a rerun keeps the streak's count (it stops again at once) instead of finishing
  with exit 0 and a NaN loss, and going back to step 4 with a sane learning rate works."""
  wd = tmp_path / "run"
  shutil.copytree(healthy, wd)
  cfg = small_cfg(12, data, optimizer=dict(learning_rate=1e30),
                  checkpoint=dict(every_steps=1, max_to_keep=2), train=dict(max_consecutive_nonfinite=3))
  with pytest.raises(NonFiniteError) as e:
    run(cfg, str(wd))
  msg = str(e.value)
  # Flags are read on logging and save steps; saving every step reads step 8's there, and the
  # run stops at step 8.
  assert "3 consecutive steps (6-8)" in msg and "--config.checkpoint.restore_from=4" in msg
  assert _steps(wd) == [4, 7, 8]  # 5 and 6 went; 4, the newest healthy step, stays
  assert read_meta(str(wd / "checkpoints" / "4"))["nonfinite"]["count"] == 0
  assert read_meta(str(wd / "checkpoints" / "8"))["nonfinite"] == {"count": 3, "last": 8}
  with pytest.raises(NonFiniteError, match=r"consecutive steps \(6-\d+\).*restore_from=4"):
    run(cfg, str(wd))
  assert 4 in _steps(wd) and _steps(wd)[-1] <= 11, _steps(wd)  # a rerun stops again at once
  last = _steps(wd)[-1]
  skipped = column(wd, "skipped")
  assert all(skipped[s] == 1.0 for s in range(6, last + 1))
  # Going back as the message says, with a sane learning rate, finishes.
  ok = small_cfg(6, data, checkpoint=dict(every_steps=1, max_to_keep=2, restore_from="4"))
  assert run(ok, str(wd))["steps"] == 6


@pytest.mark.slow  # 34 s; tests/checkpoint/test_integrity.py covers corrupt steps
def test_a_missing_data_iterator_file_is_a_corrupt_step(tmp_path, data, healthy, capsys):
  wd = tmp_path / "run"
  shutil.copytree(healthy, wd)
  for name in os.listdir(wd / "checkpoints" / "4" / "data"):
    if name.startswith("process_0_of_1.data"):
      os.remove(wd / "checkpoints" / "4" / "data" / name)
  args = ["train", "--config", "configs/tiny/gpt.py", "--workdir", str(wd), "--config.train.steps=6",
          *small_overrides(data)]
  assert cli.main(args) == 2
  err = capsys.readouterr().err
  assert "checkpoint step 4" in err and "data iterator file" in err and "missing or changed" in err
  assert cli.main(args + ["--config.checkpoint.reset_data_iterator=true"]) == 0
  out = capsys.readouterr().out
  assert "resumed from step 4" in out and "the data stream restarts, skipping" in out
  assert cli.main(args[:-1] + [a for a in args[-1:]] + ["--config.train.steps=8",
                                                           "--config.checkpoint.skip_corrupt=true"]) == 0


def test_resume_with_a_new_batch_size_restarts_the_data_past_the_tokens_seen(tmp_path, data, healthy, capsys):
  wd = tmp_path / "run"
  shutil.copytree(healthy, wd)
  cfg = small_cfg(6, data, train=dict(batch_size=16), optimizer=dict(learning_rate=1e-3))
  assert run(cfg, str(wd))["steps"] == 6
  out = capsys.readouterr().out
  assert "train.batch_size: 8 -> 16 since checkpoint step 4" in out
  # 4 steps x 8 rows x 32 tokens seen, now 16 x 32 a batch: 2 batches skipped.
  assert "skipping 2 batch(es) (1,024 tokens already seen)" in out
  assert "notice: the schedule differs" in out and "optimizer.learning_rate: 0.003 -> 0.001" in out
  assert column(wd, "tokens_seen")[6] == 4 * 8 * 32 + 2 * 16 * 32


def test_resume_with_another_data_config_says_what_changed(tmp_path, data, healthy):
  wd = tmp_path / "run"
  shutil.copytree(healthy, wd)
  before = (wd / "config.json").read_text()
  with pytest.raises(ConfigError, match=r"data config differs from checkpoint step 4's \(data\.seed: 0 -> 7\)"
                                        r".*reset_data_iterator=true"):
    run(small_cfg(6, {**data, "seed": 7}), str(wd))
  assert (wd / "config.json").read_text() == before  # a refused run leaves config.json alone
  assert run(small_cfg(6, {**data, "seed": 7}, checkpoint=dict(reset_data_iterator=True)), str(wd))["steps"] == 6


def _cmd(wd, data, *extra):
  return [sys.executable, "-m", "t5x_like.cli", "train", "--config", "configs/tiny/gpt.py", "--workdir", str(wd),
          *small_overrides(data), *extra]


@pytest.mark.parametrize("sig", [pytest.param(signal.SIGTERM, marks=pytest.mark.slow), signal.SIGINT])
def test_a_stop_during_the_final_eval_keeps_the_final_step(tmp_path, data, healthy, sig):
  """The last step is saved before the final eval; a signal there ends the process with
  exit 0 and one line (no traceback), and a rerun redoes only the final evaluation."""
  wd = tmp_path / "run"
  shutil.copytree(healthy, wd)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  extra = ["--config.train.steps=6", "--config.train.eval_batches=400", "--config.data.synthetic_eval_docs=4000"]
  proc = subprocess.Popen(_cmd(wd, data, *extra), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  for line in proc.stdout:
    if line.startswith("step ") and "6/6" in line:
      break
  proc.send_signal(sig)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  # The signal lands during the final eval, or (on a loaded machine) just before the loop
  # sees its last step end: either way step 6 is kept and a rerun only redoes the eval.
  assert "received during the final evaluation" in out or "saving step 6 and stopping" in out, out
  assert "rerun the same command to redo the final evaluation" in out
  assert "Traceback" not in err and "KeyboardInterrupt" not in err
  assert 6 in _steps(wd)
  assert not (wd / "summary.json").exists() or json.load(open(wd / "summary.json"))["steps"] == 4
  p = subprocess.run(_cmd(wd, data, "--config.train.steps=6"), env=env, capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  assert "resumed from step 6" in p.stdout and json.load(open(wd / "summary.json"))["steps"] == 6


@pytest.fixture
def small_disk(tmp_path):
  """A 64 MiB tmpfs: a disk that can really fill up (needs mount; skipped where refused)."""
  mnt = tmp_path / "disk"
  mnt.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True).returncode:
    pytest.skip("cannot mount a tmpfs here, so a full disk cannot be made")
  yield mnt
  subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(disk, leave_bytes):
  free = shutil.disk_usage(disk).free
  with open(disk / "filler", "wb") as f:
    f.truncate(0)
    chunk = b"\0" * (1 << 20)
    remaining = free - leave_bytes
    while remaining > 0:
      f.write(chunk[:min(len(chunk), remaining)])
      remaining -= len(chunk)


def test_a_full_disk_is_one_line_on_the_step_that_failed_and_loses_nothing(tmp_path, data, small_disk, capsys):
  wd = small_disk / "run"
  args = ["train", "--config", "configs/tiny/gpt.py", "--workdir", str(wd), *small_overrides(data),
          "--config.checkpoint.every_steps=2", "--config.train.log_every=1"]
  assert cli.main(args + ["--config.train.steps=8", "--config.train.stop_at_step=2"]) == 0
  step_bytes = sum(p.stat().st_size for p in (wd / "checkpoints" / "2").rglob("*") if p.is_file())
  capsys.readouterr()
  _fill(small_disk, step_bytes // 2)  # room for half a checkpoint
  assert cli.main(args + ["--config.train.steps=8"]) == 2
  out, err = capsys.readouterr()
  assert err.startswith("error: saving checkpoint step 4 in ") and len(err.strip().splitlines()) == 1, err
  assert "No space left on device" in err and "untouched (steps [2])" in err and "Traceback" not in err
  assert "step      6/8" not in out  # reported at the step after the failure, not at the next save
  os.remove(small_disk / "filler")  # space again: the same command resumes from step 2
  assert cli.main(args + ["--config.train.steps=8"]) == 0
  assert "resumed from step 2" in capsys.readouterr().out and _steps(wd)[-1] == 8


def test_a_full_disk_at_start_is_one_line(tmp_path, data, small_disk, capsys):
  _fill(small_disk, 0)
  args = ["train", "--config", "configs/tiny/gpt.py", "--workdir", str(small_disk / "run"), *small_overrides(data)]
  assert cli.main(args + ["--config.train.steps=4"]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "No space left on device" in err and str(small_disk) in err, err
