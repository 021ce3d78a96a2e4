"""What may stop a run early: a stop request (SIGTERM/SIGINT on any process, or a TPU
preemption notice) that every process agrees on, and a streak of non-finite steps."""

from __future__ import annotations

import signal
import threading

import jax
import numpy as np

from t5x_like.errors import NonFiniteError

__all__ = ["NonFiniteError", "NonFiniteGuard", "StopFlag", "StopRequested"]


class StopRequested(Exception):
  """A stop request was agreed on; the current step is saved (control flow, not an error)."""


# Start-up work left running in a thread when a stop signal came (`unless_stopped`). A
# trainer that stopped so exits with os._exit (cli._train): at an ordinary exit, native code
# still running there (a SentencePiece trainer's threads, say) aborts the process in C++
# static destructors.
ABANDONED: list[str] = []


class StopFlag:
  """SIGTERM/SIGINT set a flag instead of killing the process; the loop saves and exits."""

  def __init__(self, every: int = 1):
    self.reason = None  # what asked the run to stop, for the log line
    self.every = max(1, every)  # multi-process: agree on signals every this many steps
    self._old = {}

  def install(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._old[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    self.reason = f"signal {signum}"

  def check(self, what: str) -> None:
    """Raises StopRequested if this process was signalled (start-up, before any step)."""
    if self.reason is not None:
      raise StopRequested(f"{self.reason} during start-up ({what})")

  def unless_stopped(self, fn, what: str):
    """fn()'s result, run in a worker thread while this thread waits for it or for a stop
    signal. A blocking call into C++ (the input pipeline's first batch, XLA's compile) runs
    no Python signal handler until it returns, which for a first batch over a large input
    or a big model's compile is minutes; here a signal raises StopRequested at once and the
    worker is abandoned (a daemon thread). Start-up only: nothing is saved or shared yet,
    so each process decides alone."""
    self.check(what)
    out, done = {}, threading.Event()

    def work():
      try:
        out["value"] = fn()
      except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
        out["error"] = e
      done.set()

    threading.Thread(target=work, name=f"t5x_like {what}", daemon=True).start()
    while not done.wait(0.1):
      if self.reason is not None:
        ABANDONED.append(what)  # the process must leave without waiting for it (cli.main)
      self.check(what)
    if "error" in out:
      raise out["error"]
    return out["value"]

  def uninstall(self):
    for sig, old in self._old.items():
      signal.signal(sig, old)
    self._old = {}

  def agreed(self, step: int, force: bool = False) -> bool:
    """True on every process once any process was signalled, or (multi-process) once the
    JAX preemption service reached its sync point for a preemption notice, which is how
    TPU maintenance events arrive. Every process calls this at every step.

    One process decides alone. Several agree through a collective, which waits for the
    devices, so they do it only every `every` steps (the loop sets the logging interval,
    where metrics are read anyway) or when `force` (between final-evaluation batches):
    a signal is acted on at most `every - 1` steps late. The preemption sync point is a
    local check, made every step."""
    local = self.reason is not None
    if jax.process_count() == 1:
      return local
    from jax.experimental import multihost_utils
    from orbax.checkpoint import multihost as ocp_multihost
    try:
      notice = ocp_multihost.reached_preemption(step)  # False where the service is off
    except Exception:  # noqa: BLE001 - an unavailable service is not a preemption
      notice = False
    if notice and self.reason is None:
      self.reason = "a TPU preemption notice"
    if not (notice or force or step % self.every == 0):
      return False
    stop = notice or bool(np.max(multihost_utils.process_allgather(np.array([int(local)]))))
    if stop and self.reason is None:
      self.reason = "a stop signal on another process"
    return stop


class NonFiniteGuard:
  """Counts consecutive skipped (non-finite) steps. Each step's on-device `skipped` flag is
  kept, not read, until a logging step (every `every` steps), a checkpoint save or the end of
  the run: then all kept flags come to the host in one transfer and are counted in order.
  So the loop never waits on the device between logging steps; a streak that reaches
  `limit` is acted on at the next such step (at most `every - 1` steps late, all of them
  skipped or finite ones, so the saved params are still those of the last finite step)."""

  def __init__(self, limit: int, count: int = 0, last: int = 0, every: int = 1):
    # A resumed run continues the streak its checkpoint was saved in.
    self.limit, self.count, self.last, self.every = limit, count, last, max(1, every)
    self.tripped, self._pending = False, []

  def push(self, step: int, skipped) -> bool:
    """Keeps `step`'s on-device flag; on a logging step counts the kept ones. True once
    `limit` steps in a row were skipped."""
    if self.limit <= 0:
      return False
    self._pending.append((step, skipped))
    if step % self.every == 0:
      self._resolve()
    return self.tripped

  def flush(self) -> bool:
    """Counts every kept flag now (the end of the run); True if a streak reached `limit`."""
    self._resolve()
    return self.tripped

  def _resolve(self) -> None:
    pending, self._pending = self._pending, []
    if not pending or self.tripped:  # after a trip the streak that tripped is what is reported
      return
    flags = jax.device_get([f for _, f in pending])
    for (step, _), flag in zip(pending, flags, strict=True):
      if float(flag) > 0:
        self.count, self.last = self.count + 1, step
      else:
        self.count = 0
      if self.count >= self.limit:
        self.tripped = True
        return

  def streak(self) -> dict:
    """The streak as of the last pushed step (the kept flags counted now): what a checkpoint
    saved at this step records."""
    self._resolve()
    return {"count": self.count, "last": self.last}

  def error(self, where: str, good_step: int | None, learning_rate: float) -> NonFiniteError:
    back = (f", or go back to step {good_step} with --config.checkpoint.restore_from={good_step}"
            if good_step is not None else "")
    return NonFiniteError(
        f"training diverged: {self.count} consecutive steps ({self.last - self.count + 1}-{self.last}) had a "
        f"non-finite loss or gradient and were skipped (train.max_consecutive_nonfinite={self.limit}); "
        f"{where}. Its params are those of the last finite step: lower --config.optimizer.learning_rate "
        f"(now {learning_rate:g}) and rerun to continue from it{back}")
