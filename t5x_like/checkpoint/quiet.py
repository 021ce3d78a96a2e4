"""Keeps a failed Orbax restore to one line of output.

When a restore fails on corrupt files, Orbax abandons its other reads; when they are
collected Python prints each one's traceback and TensorStore spec (hundreds of lines for
one truncated file, in the middle of a run that goes on with skip_corrupt, or after the
one-line error). The error we raise already says what failed, so those are dropped; any
other unraisable exception or asyncio error is still shown.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import sys


def first_line(e: BaseException, limit: int) -> str:
  lines = str(e).strip().splitlines()
  # Orbax's read errors end their first line with an unreadable TensorStore spec object.
  text = lines[0].split(" See full TensorStore details")[0] if lines else ""
  return f"{type(e).__name__}: {text[:limit]}"


def brief(e: BaseException) -> str:
  """One line for a failed save or restore: the error and, when it was raised from another,
  the root cause (for a corrupt file that names the array and the file); an operating-system
  reason (a full disk, say) found anywhere in them comes first."""
  root = e
  while root.__cause__ is not None and root.__cause__ is not root:
    root = root.__cause__
  text = first_line(e, 300) if root is e else f"{first_line(e, 200)}; caused by {first_line(root, 300)}"
  reason = os_reason(e)
  return f"{reason}: {text}" if reason else text


_OS_REASONS = re.compile(r"No space left on device|Disk quota exceeded|Read-only file system|Permission denied|"
                         r"Input/output error|Too many open files")


def os_reason(e: BaseException | None) -> str:
  """The operating-system reason behind an error, from its chain (OSError, or the text
  TensorStore and TensorFlow put into theirs), e.g. "No space left on device"; "" if none."""
  seen = 0
  while e is not None and seen < 8:
    if isinstance(e, OSError) and e.strerror:
      return e.strerror
    found = _OS_REASONS.search(str(e))
    if found:
      return found.group(0)
    e, seen = e.__cause__ or e.__context__, seen + 1
  return ""


def _from_orbax(exc: BaseException | None) -> bool:
  """Whether an exception, or one it was raised from, passed through Orbax's code."""
  seen = 0
  while exc is not None and seen < 8:
    tb = exc.__traceback__
    while tb is not None:
      if f"{os.sep}orbax{os.sep}" in tb.tb_frame.f_code.co_filename:
        return True
      tb = tb.tb_next
    exc, seen = exc.__cause__ or exc.__context__, seen + 1
  return False


def _is_abandoned_orbax_read(unraisable) -> bool:
  """An unraisable exception left behind by a failed Orbax restore: the other reads of that
  restore, still pending as coroutines on Orbax's (then closed) event loop."""
  exc, obj = unraisable.exc_value, unraisable.object
  if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
    return True
  code = getattr(obj, "cr_code", None)
  return (code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename) or _from_orbax(exc)


class _DropAbandonedOrbaxReads(logging.Filter):
  """asyncio logs "... exception was never retrieved" for the same abandoned reads."""

  def filter(self, record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return not ("never retrieved" in record.getMessage() and _from_orbax(exc))


class _DropOrbaxErrorLogs(logging.Filter):
  """Orbax logs each failure of a background save, with its traceback, from several of its
  threads (about 500 lines for one full disk); the error reaches us and is reported once,
  in one line, so those records are dropped."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not (record.levelno >= logging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname)


def quiet_orbax_logs() -> None:
  absl = logging.getLogger("absl")
  if not any(isinstance(f, _DropOrbaxErrorLogs) for f in absl.filters):
    absl.addFilter(_DropOrbaxErrorLogs())


def _install() -> None:
  quiet_orbax_logs()
  previous = sys.unraisablehook
  if getattr(previous, "_t5x_like_quiet", False):
    return

  def hook(unraisable):
    if not _is_abandoned_orbax_read(unraisable):
      previous(unraisable)
  hook._t5x_like_quiet = True
  sys.unraisablehook = hook
  asyncio_log = logging.getLogger("asyncio")
  if not any(isinstance(f, _DropAbandonedOrbaxReads) for f in asyncio_log.filters):
    asyncio_log.addFilter(_DropAbandonedOrbaxReads())


@contextlib.contextmanager
def orbax_restore():
  """Around every Orbax restore: leftovers of a failure are dropped (above) and collected
  at once, before the caller turns the error into its one-line message."""
  _install()
  try:
    yield
  except Exception:
    gc.collect()
    raise
