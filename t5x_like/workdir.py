"""The run's working directory: checked before anything is written to it, and held by one
trainer at a time.

The lock is `WORKDIR/lock.json`, created with O_EXCL (atomic on local and shared file
systems) and holding the owner's host, pid, start time and a random run id. A heartbeat
thread touches it every `HEARTBEAT_S` seconds. Another trainer refuses to start while the
lock is held; a lock is stale, and taken over, when its process is gone (same host) or its
heartbeat is older than `LEASE_S` (any host, e.g. a preempted VM on shared storage).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
import uuid

import jax

from t5x_like.errors import UserError

LOCK_NAME = "lock.json"
HEARTBEAT_S = 10.0
LEASE_S = 60.0  # a lock whose heartbeat is older than this is stale


class WorkdirError(UserError):
  """A workdir that cannot be used, or is in use by another trainer."""


def os_reason(e: OSError) -> str:
  return f"[Errno {e.errno}] {e.strerror}" if e.errno else str(e)


def check_workdir(workdir: str) -> str:
  """The absolute path of a usable workdir, created if missing; one plain error otherwise."""
  if not workdir or not workdir.strip():
    raise WorkdirError("--workdir is empty; pass the directory for checkpoints, metrics and config.json")
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise WorkdirError(f"--workdir {path} is a file, not a directory; choose another path")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    parent = next((p for p in _parents(path) if os.path.exists(p)), "")
    why = f"{parent} is a file" if parent and not os.path.isdir(parent) else os_reason(e)
    raise WorkdirError(f"cannot create --workdir {path}: {why}; choose another path") from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise WorkdirError(f"--workdir {path} is not writable; fix its permissions or choose another path")
  for name in WRITTEN_DIRS:  # a run writes into these too: a read-only one fails only at a save
    sub = os.path.join(path, name)
    if os.path.exists(sub) and not (os.path.isdir(sub) and os.access(sub, os.W_OK | os.X_OK)):
      why = "is not a directory" if not os.path.isdir(sub) else "is not writable (permissions, or a read-only mount)"
      raise WorkdirError(f"{sub} {why}: a run writes there; fix it or choose another --workdir")
  return path


WRITTEN_DIRS = ("checkpoints", "tensorboard")


def _parents(path: str):
  while True:
    parent = os.path.dirname(path)
    if parent == path:
      return
    yield parent
    path = parent


def write_file(path: str, text: str) -> None:
  """Writes `text` to `path` atomically (a temporary file renamed into place); a full disk
  or a read-only file system is one plain error and leaves the old file as it was."""
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with open(tmp, "w") as f:
      f.write(text)
    os.replace(tmp, path)
  except OSError as e:
    try:
      os.remove(tmp)
    except OSError:
      pass
    raise WorkdirError(f"cannot write {path}: {os_reason(e)}") from None


def write_json(path: str, value) -> None:
  write_file(path, json.dumps(value, indent=2, sort_keys=True))


class WorkdirLock:
  """Held by process 0 of a run for as long as the run lives (`acquire` ... `release`)."""

  def __init__(self, workdir: str, log=print, heartbeat_s: float = HEARTBEAT_S, lease_s: float = LEASE_S):
    self.path = os.path.join(workdir, LOCK_NAME)
    self.log, self.heartbeat_s, self.lease_s = log, heartbeat_s, lease_s
    self.owner = {"host": socket.gethostname(), "pid": os.getpid(),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "run_id": uuid.uuid4().hex}
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None
    self.lost = False  # set when another trainer took the lock over (our heartbeat stopped too long)
    self._lost_to: dict = {}

  # ---------------------------------------------------------------- taking it

  def acquire(self) -> None:
    for _ in range(3):
      if self._create():
        break
      holder, age = self._read()
      if holder is not None and not self._stale(holder, age):
        raise WorkdirError(
            f"{os.path.dirname(self.path)} is in use by another trainer (host {holder.get('host')}, pid "
            f"{holder.get('pid')}, since {holder.get('since')}; heartbeat {age:.0f}s ago, lock "
            f"{self.path}). Wait for it to finish or stop it, or use another --workdir")
      if holder is not None:
        self.log(f"[t5x_like] taking over a stale workdir lock (host {holder.get('host')}, pid "
                 f"{holder.get('pid')}, since {holder.get('since')}; heartbeat {age:.0f}s ago)")
      self._remove_if(holder)
    else:
      raise WorkdirError(f"could not take the workdir lock {self.path}: other trainers keep taking it")
    self._thread = threading.Thread(target=self._beat, name="t5x_like-workdir-lock", daemon=True)
    self._thread.start()

  def _create(self) -> bool:
    try:
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    except OSError as e:
      raise WorkdirError(f"cannot create the workdir lock {self.path}: {os_reason(e)}") from None
    try:
      with os.fdopen(fd, "w") as f:
        json.dump(self.owner, f)
    except OSError as e:
      os.remove(self.path)
      raise WorkdirError(f"cannot write the workdir lock {self.path}: {os_reason(e)}") from None
    return True

  def _read(self) -> tuple[dict | None, float]:
    """(the holder's record, seconds since its last heartbeat); (None, 0) if the lock vanished.
    An unreadable lock (a crash while writing it) counts as stale once its lease is over."""
    try:
      age = time.time() - os.stat(self.path).st_mtime
      with open(self.path) as f:
        return json.load(f), age
    except FileNotFoundError:
      return None, 0.0
    except (OSError, ValueError):
      return {"host": "?", "pid": "?", "since": "?", "run_id": None}, age

  def _stale(self, holder: dict, age: float) -> bool:
    if age > self.lease_s:
      return True
    if holder.get("host") == self.owner["host"] and isinstance(holder.get("pid"), int):
      return not _pid_alive(holder["pid"])
    return False

  def _remove_if(self, holder: dict | None) -> None:
    try:
      current, _ = self._read()
      if holder is None or current == holder:
        os.remove(self.path)
    except FileNotFoundError:
      pass

  # ---------------------------------------------------------------- holding it

  def _beat(self) -> None:
    while not self._stop.wait(self.heartbeat_s):
      holder, _ = self._read()
      if holder is None or holder.get("run_id") != self.owner["run_id"]:
        self.lost, self._lost_to = True, holder or {}
        self.log(f"[t5x_like] warning: the workdir lock {self.path} is no longer ours "
                 f"(now {holder}); another trainer may be writing here")
        return
      try:
        os.utime(self.path)
      except OSError:
        pass  # e.g. a full disk: the next beat tries again

  def taken_by(self) -> dict | None:
    """None while the lock is ours; else the record of whoever holds it now ({} when the
    lock file is gone). Read from the file, so it is true even right after this process
    was paused (SIGSTOP, a frozen VM) for longer than the lease and another trainer took
    the workdir over before the heartbeat thread could notice."""
    if not self.lost:
      holder, _ = self._read()
      if holder is not None and holder.get("run_id") == self.owner["run_id"]:
        return None
      self.lost = True
      self._lost_to = holder or {}
    return self._lost_to

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=5)
      self._thread = None
      holder, _ = self._read()
      if holder is not None and holder.get("run_id") == self.owner["run_id"]:
        try:
          os.remove(self.path)
        except OSError:
          pass


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # exists, owned by someone else
  except OSError as e:
    return e.errno != errno.ESRCH
  return True


def lock_workdir(workdir: str, log) -> WorkdirLock | None:
  """Process 0 takes the lock; every process learns whether it did, so all stop together."""
  lock, error = None, None
  if jax.process_index() == 0:
    lock = WorkdirLock(workdir, log)
    try:
      lock.acquire()
    except WorkdirError as e:
      error = e
  if jax.process_count() > 1:
    from t5x_like.checkpoint.manager import all_processes_ok

    if not all_processes_ok(error is None):
      raise error or WorkdirError(f"{workdir}: process 0 could not take the workdir lock (see its output)")
  if error is not None:
    raise error
  return lock


STATUS_NAME = "status.json"


class Session:
  """What a training run holds while it lives: its checked workdir, the workdir lock and
  the stop flag (SIGTERM/SIGINT become a request to save and stop, from start-up until the
  process is done, the final evaluation included). It keeps WORKDIR/status.json current:
  running, then finished, preempted, diverged or failed (with the one-line error), which
  `t5x-like runs` and sweeps read."""

  def __init__(self, workdir: str, log):
    from t5x_like.train.guards import StopFlag

    self.path = check_workdir(workdir)
    self.log = log
    self.stop = StopFlag()
    self.lock: WorkdirLock | None = None
    self.started = time.strftime("%Y-%m-%d %H:%M:%S")
    self._ended = False

  def __enter__(self) -> Session:
    self.lock = lock_workdir(self.path, self.log)
    self.stop.install()
    self.status("running")
    return self

  def check_owner(self, doing: str) -> None:
    """Raises WorkdirError, on every process, when another trainer has taken this
    workdir's lock over (this one stalled past the lease): called before each checkpoint
    save and before the run's last writes, so two trainers never write one workdir's
    checkpoints at once. Collective when there are several processes."""
    holder = self.lock.taken_by() if self.lock is not None else None
    if jax.process_count() > 1:
      from t5x_like.checkpoint.manager import all_processes_ok

      if all_processes_ok(holder is None):
        return
    elif holder is None:
      return
    self._ended = True  # the status file is the new owner's now
    who = (f"host {holder.get('host')}, pid {holder.get('pid')}, since {holder.get('since')}" if holder
           else "the lock file is gone" if jax.process_index() == 0 else "see process 0's output")
    raise WorkdirError(
        f"another trainer took over {self.path} ({who}) while this one was stalled for longer than "
        f"the {LEASE_S:.0f} s lease (suspended, or its host frozen); this trainer stops before "
        f"{doing} and writes nothing more there. The other trainer carries on from the last "
        f"checkpoint; stop it first if this run should continue instead")

  def status(self, status: str, **fields) -> None:
    if self.lock is not None and self.lock.lost:
      return  # another trainer owns the workdir (and its status) now
    if jax.process_index() == 0:
      try:
        write_json(os.path.join(self.path, STATUS_NAME), {
            "status": status, "started": self.started, "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
            "host": socket.gethostname(), "pid": os.getpid(), **fields})
      except WorkdirError:
        pass  # a full disk is reported by whatever write needed the space
    self._ended = status != "running"

  def __exit__(self, kind, error, tb) -> None:
    from t5x_like.errors import NonFiniteError

    if not self._ended:
      state = ("diverged" if isinstance(error, NonFiniteError) else "failed") if error else "finished"
      self.status(state, **({"error": f"{type(error).__name__}: {error}"} if error else {}))
    self.stop.uninstall()
    if self.lock is not None:
      self.lock.release()


@contextlib.contextmanager
def writing_output(work: str, command: str):
  """Held while `command` (data clean, data build) fills its WORK (OUTPUT.incomplete)
  directory: an flock on WORK.lock, so a second command on the same output stops with one
  line instead of deleting the first one's work. The kernel drops the lock when its
  process dies, so a killed run never blocks the next."""
  lock = work + ".lock"
  os.makedirs(os.path.dirname(os.path.abspath(lock)), exist_ok=True)
  fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    os.close(fd)
    raise UserError(f"another `{command}` is writing {work} now (it holds {lock}); wait for it to finish, "
                    "or choose another --output") from None
  try:
    yield
  finally:
    with contextlib.suppress(OSError):
      os.unlink(lock)
    os.close(fd)

