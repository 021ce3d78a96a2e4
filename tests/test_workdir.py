"""The workdir: one plain error for a path that cannot be a workdir, and one trainer at a
time (a second one refuses, naming the first; a lock left by a dead trainer is taken over)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from t5x_like import cli
from t5x_like.workdir import LOCK_NAME, WorkdirError, WorkdirLock, check_workdir

HOLD = """
import sys, time
from t5x_like.workdir import WorkdirLock
lock = WorkdirLock(sys.argv[1], heartbeat_s=0.2)
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def _holder(workdir):
  p = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], stdout=subprocess.PIPE, text=True)
  assert p.stdout.readline().strip() == "held"
  return p


def test_a_second_trainer_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path):
  holder = _holder(tmp_path)
  try:
    with pytest.raises(WorkdirError) as e:
      WorkdirLock(str(tmp_path)).acquire()
    msg = str(e.value)
    assert f"in use by another trainer (host {socket.gethostname()}, pid {holder.pid}, since " in msg
    assert "heartbeat" in msg and str(tmp_path / LOCK_NAME) in msg
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()  # reaped: the pid no longer exists
  logs = []
  lock = WorkdirLock(str(tmp_path), log=logs.append)
  lock.acquire()  # same host, dead pid: stale at once
  assert logs and "taking over a stale workdir lock" in logs[0] and f"pid {holder.pid}" in logs[0]
  assert json.load(open(tmp_path / LOCK_NAME))["pid"] == os.getpid()
  lock.release()
  assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_from_another_host_is_stale_only_without_a_heartbeat(tmp_path):
  path = tmp_path / LOCK_NAME
  path.write_text(json.dumps({"host": "other-host", "pid": 1, "since": "earlier", "run_id": "x"}))
  with pytest.raises(WorkdirError, match=r"host other-host, pid 1, since earlier"):
    WorkdirLock(str(tmp_path), lease_s=60).acquire()
  old = time.time() - 120
  os.utime(path, (old, old))  # no heartbeat for two minutes: the other host is gone
  lock = WorkdirLock(str(tmp_path), log=lambda m: None, lease_s=60)
  lock.acquire()
  assert json.load(open(path))["host"] == socket.gethostname()
  lock.release()


def test_the_heartbeat_keeps_a_live_lock_fresh(tmp_path):
  lock = WorkdirLock(str(tmp_path), heartbeat_s=0.1)
  lock.acquire()
  path = tmp_path / LOCK_NAME
  old = time.time() - 50
  os.utime(path, (old, old))
  time.sleep(0.5)
  assert time.time() - os.stat(path).st_mtime < 5
  lock.release()


def test_paths_that_cannot_be_a_workdir_are_one_plain_error(tmp_path):
  (tmp_path / "file").write_text("x")
  with pytest.raises(WorkdirError, match="--workdir is empty"):
    check_workdir("")
  with pytest.raises(WorkdirError, match=r"file is a file, not a directory"):
    check_workdir(str(tmp_path / "file"))
  with pytest.raises(WorkdirError, match=r"cannot create --workdir .*file/sub: .*file is a file"):
    check_workdir(str(tmp_path / "file" / "sub"))
  ro = tmp_path / "ro"
  ro.mkdir()
  os.chmod(ro, 0o555)
  try:
    if os.geteuid() == 0:  # root writes anyway: check with a read-only bind mount when allowed
      mounted = (subprocess.run(["mount", "--bind", str(ro), str(ro)], capture_output=True).returncode == 0
                 and subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True).returncode == 0)
      if not mounted:
        pytest.skip("root without mount: a read-only directory cannot be made here")
    try:
      with pytest.raises(WorkdirError, match=r"(not writable|Read-only file system)"):
        WorkdirLock(check_workdir(str(ro))).acquire()
    finally:
      if os.geteuid() == 0:
        subprocess.run(["umount", str(ro)], capture_output=True)
  finally:
    os.chmod(ro, 0o755)


def test_a_checkpoints_directory_the_run_cannot_write_is_refused_at_start(tmp_path):
  """A workdir whose checkpoints/ is read-only (a bind mount) or a file: one plain line at
  start-up, not a failed save later (Orbax's timeout, after the steps were spent)."""
  wd = tmp_path / "wd"
  (wd / "checkpoints").mkdir(parents=True)
  (wd / "tensorboard").write_text("x")
  with pytest.raises(WorkdirError, match=r"wd/tensorboard is not a directory: a run writes there"):
    check_workdir(str(wd))
  (wd / "tensorboard").unlink()
  ckpts = wd / "checkpoints"
  if os.geteuid() != 0:
    os.chmod(ckpts, 0o555)
  elif not (subprocess.run(["mount", "--bind", str(ckpts), str(ckpts)], capture_output=True).returncode == 0
            and subprocess.run(["mount", "-o", "remount,ro,bind", str(ckpts)], capture_output=True).returncode == 0):
    pytest.skip("root without mount: a read-only directory cannot be made here")
  try:
    with pytest.raises(WorkdirError, match=r"wd/checkpoints is not writable \(permissions, or a read-only mount\)"):
      check_workdir(str(wd))
  finally:
    if os.geteuid() == 0:
      subprocess.run(["umount", str(ckpts)], capture_output=True)
    os.chmod(ckpts, 0o755)
  assert check_workdir(str(wd)) == str(wd)


def test_cli_workdir_errors_are_one_line(tmp_path, capsys):
  (tmp_path / "file").write_text("x")
  for workdir, pattern in (("", "--workdir is empty"), (str(tmp_path / "file"), "is a file")):
    assert cli.main(["train", "--config", "configs/tiny/gpt.py", "--workdir", workdir]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and pattern in err and len(err.splitlines()) == 1, err
