"""What may stop a run early: a stop request (SIGTERM/SIGINT on any process, or a TPU
preemption notice) that every process agrees on, and a streak of non-finite steps."""

from __future__ import annotations

import signal

import jax
import numpy as np

from t5x_like.errors import NonFiniteError

__all__ = ["NonFiniteError", "NonFiniteGuard", "StopFlag", "StopRequested"]


class StopRequested(Exception):
  """A stop request was agreed on; the current step is saved (control flow, not an error)."""


class StopFlag:
  """SIGTERM/SIGINT set a flag instead of killing the process; the loop saves and exits."""

  def __init__(self):
    self.reason = None  # what asked the run to stop, for the log line
    self._old = {}

  def install(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._old[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    self.reason = f"signal {signum}"

  def uninstall(self):
    for sig, old in self._old.items():
      signal.signal(sig, old)
    self._old = {}

  def agreed(self, step: int) -> bool:
    """True on every process once any process was signalled, or (multi-process) once the
    JAX preemption service reached its sync point for a preemption notice, which is how
    TPU maintenance events arrive. Every process calls this at every step."""
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
    stop = notice or bool(np.max(multihost_utils.process_allgather(np.array([int(local)]))))
    if stop and self.reason is None:
      self.reason = "a stop signal on another process"
    return stop


class NonFiniteGuard:
  """Counts consecutive skipped (non-finite) steps. Each step's `skipped` scalar is read one
  step late, after the next step was dispatched, so the host never waits for the step it just
  launched: the device keeps one step queued and the check costs no pipeline stall."""

  def __init__(self, limit: int, count: int = 0, last: int = 0):
    # A resumed run continues the streak its checkpoint was saved in.
    self.limit, self.count, self.last, self._pending = limit, count, last, None

  def push(self, step: int, skipped) -> bool:
    """Records `step`'s on-device flag; True once `limit` steps in a row were skipped."""
    if self.limit <= 0:
      return False
    done, self._pending = self._pending, (step, skipped)
    return done is not None and self._count(*done)

  def flush(self) -> bool:
    done, self._pending = self._pending, None
    return done is not None and self._count(*done)

  def _count(self, step: int, skipped) -> bool:
    if float(jax.device_get(skipped)) > 0:
      self.count, self.last = self.count + 1, step
    else:
      self.count = 0
    return self.limit > 0 and self.count >= self.limit

  def streak(self) -> dict:
    """The streak as of the last pushed step (its flag read now), without consuming it: what
    a checkpoint saved at this step records."""
    count, last = self.count, self.last
    if self._pending is not None:
      step, skipped = self._pending
      count, last = (count + 1, step) if float(jax.device_get(skipped)) > 0 else (0, last)
    return {"count": count, "last": last}

  def error(self, where: str, good_step: int | None, learning_rate: float) -> NonFiniteError:
    back = (f", or go back to step {good_step} with --config.checkpoint.restore_from={good_step}"
            if good_step is not None else "")
    return NonFiniteError(
        f"training diverged: {self.count} consecutive steps ({self.last - self.count + 1}-{self.last}) had a "
        f"non-finite loss or gradient and were skipped (train.max_consecutive_nonfinite={self.limit}); "
        f"{where}. Its params are those of the last finite step: lower --config.optimizer.learning_rate "
        f"(now {learning_rate:g}) and rerun to continue from it{back}")
