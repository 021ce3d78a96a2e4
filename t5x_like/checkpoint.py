"""A thin layer over orbax.checkpoint.CheckpointManager, and the rules for what a run starts from.

A checkpoint step directory holds three items written through one `ocp.args.Composite`:
`state` (params, optimizer state, step), `data` (each host's tf.data iterator state) and
`meta` (resolved config, versions, mesh, tokens seen). Orbax writes into a temporary
directory and renames it when every item is complete, so a process killed mid-save
leaves only a temporary directory that is never taken for a checkpoint.

Nothing here deletes a checkpoint: only Orbax's `max_to_keep`/`keep_period` policy does,
after a newer save has completed. A checkpoint that cannot be used is renamed
`<step>.<why>-<time>` (Orbax ignores names that are not step numbers) so later saves of
the same step number do not collide with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import math
import os
import sys
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from t5x_like.config import CheckpointConfig, ConfigError


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be used; the message names the step, the path and the fix."""


class DataIteratorHandler(ocp.CheckpointHandler):
  """Saves every host's tf.data iterator with tf.train.Checkpoint, one file set per host."""

  def _prefix(self, directory: epath.Path) -> str:
    return str(directory / f"process_{jax.process_index()}_of_{jax.process_count()}")

  def save(self, directory: epath.Path, args: DataIteratorSave):
    import tensorflow as tf  # noqa: PLC0415
    directory.mkdir(parents=True, exist_ok=True)
    tf.train.Checkpoint(iterator=args.iterator).write(self._prefix(directory))

  def restore(self, directory: epath.Path, args: DataIteratorRestore):
    import tensorflow as tf  # noqa: PLC0415
    prefix = self._prefix(directory)
    if not tf.io.gfile.exists(prefix + ".index"):
      return False  # written by another process count: the caller decides what to do
    tf.train.Checkpoint(iterator=args.iterator).read(prefix).assert_consumed()
    return True

  def metadata(self, directory: epath.Path):
    return None


@ocp.args.register_with_handler(DataIteratorHandler, for_save=True)
@dataclasses.dataclass
class DataIteratorSave(ocp.args.CheckpointArgs):
  iterator: Any


@ocp.args.register_with_handler(DataIteratorHandler, for_restore=True)
@dataclasses.dataclass
class DataIteratorRestore(ocp.args.CheckpointArgs):
  iterator: Any


@dataclasses.dataclass
class Restored:
  step: int
  state: dict
  meta: dict
  data_restored: bool
  source: str  # the step directory it came from


def _first_line(e: BaseException, limit: int) -> str:
  lines = str(e).strip().splitlines()
  # Orbax's read errors end their first line with an unreadable TensorStore spec object.
  text = lines[0].split(" See full TensorStore details")[0] if lines else ""
  return f"{type(e).__name__}: {text[:limit]}"


def _brief(e: Exception) -> str:
  """One line for a failed restore: the error and, when it was raised from another, the
  root cause (for a corrupt file that names the array and the file)."""
  root = e
  while root.__cause__ is not None and root.__cause__ is not root:
    root = root.__cause__
  if root is e:
    return _first_line(e, 300)
  return f"{_first_line(e, 200)}; caused by {_first_line(root, 300)}"


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


def _quiet_orbax_leftovers() -> None:
  """Installed before any restore. When a restore fails on corrupt files, Orbax abandons its
  other reads; when they are collected Python prints each one's traceback and TensorStore
  spec (hundreds of lines for one truncated file, in the middle of a run that goes on with
  skip_corrupt, or after the one-line error). The error we raise already says what failed,
  so those are dropped; any other unraisable exception or asyncio error is still shown."""
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
def _orbax_restore():
  """Around every Orbax restore: leftovers of a failure are dropped (above) and collected
  at once, before the caller turns the error into its one-line message."""
  _quiet_orbax_leftovers()
  try:
    yield
  except Exception:
    gc.collect()
    raise


def _barrier(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # noqa: PLC0415
    multihost_utils.sync_global_devices(name)


def _all_processes_ok(ok: bool) -> bool:
  """Every process must take the same branch after a restore, or the next collective hangs."""
  if jax.process_count() == 1:
    return ok
  from jax.experimental import multihost_utils  # noqa: PLC0415
  return bool(np.min(multihost_utils.process_allgather(np.array([int(ok)]))))


def _restore_items(step_dir: str, abstract_state: dict, data_iterator, restore_fn) -> tuple[dict, dict, bool]:
  items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
  if data_iterator is not None and os.path.isdir(os.path.join(step_dir, "data")):
    items["data"] = DataIteratorRestore(data_iterator)
  out = restore_fn(ocp.args.Composite(**items))
  return out["state"], dict(out["meta"] or {}), bool(out.get("data")) if "data" in items else False


class Checkpointer:
  def __init__(self, directory: str, cfg: CheckpointConfig, model_cfg: dict | None = None):
    self.directory = os.path.abspath(directory)
    self.cfg = cfg
    self.model_cfg = model_cfg  # the run's model config as a dict, for clearer mismatch errors
    options = ocp.CheckpointManagerOptions(
        max_to_keep=cfg.max_to_keep,
        keep_period=cfg.keep_period or None,
        enable_async_checkpointing=cfg.async_save,
        create=True,
        cleanup_tmp_directories=True,
    )
    self.manager = ocp.CheckpointManager(self.directory, options=options)
    self._in_flight: int | None = None  # the step of the last save started

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  # ---------------------------------------------------------------- saving

  def save(self, step: int, state: dict, data_iterator=None, meta: dict | None = None,
           force: bool = False) -> bool:
    """Starts a save (async unless checkpoint.async_save=false). A step that already exists is
    left as it is (Orbax never overwrites one): returns False."""
    self.wait()  # an error in the previous async save surfaces here, naming its step
    if step in self.all_steps():
      return False
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta or {})}
    if data_iterator is not None:
      items["data"] = DataIteratorSave(data_iterator)
    try:
      saved = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
    except Exception as e:
      raise self._save_failed(step, e) from e
    if saved:
      self._in_flight = step
    return saved

  def _save_failed(self, step: int, e: Exception) -> CheckpointError:
    # Orbax only removes old steps after a newer save completed, so a failed save leaves
    # the earlier checkpoints in place (its temporary directory is cleaned up at the next start).
    self.manager.reload()
    return CheckpointError(
        f"saving checkpoint step {step} in {self.directory} failed ({_brief(e)}); the checkpoints "
        f"already there are untouched (steps {self.all_steps() or 'none'}). Check free space and "
        "permissions, then rerun the same command to resume from the latest one")

  def wait(self):
    try:
      self.manager.wait_until_finished()
    except Exception as e:
      raise self._save_failed(self._in_flight, e) from e

  def close(self):
    self.wait()
    self.manager.close()

  # ---------------------------------------------------------------- restoring

  def restore(self, step: int, abstract_state: dict, data_iterator=None) -> Restored:
    """Restores one step onto the shardings in `abstract_state` (any mesh, device or process count)."""
    step_dir = self.step_dir(step)
    check_fits(step_dir, abstract_state, self.model_cfg, f"checkpoint step {step}")
    error = None
    try:
      with _orbax_restore():
        state, meta, data_ok = _restore_items(step_dir, abstract_state, data_iterator,
                                              lambda args: self.manager.restore(step, args=args))
    except Exception as e:  # corrupt or partial files
      error = e
    if not _all_processes_ok(error is None):
      reason = _brief(error) if error else "it failed on another process"
      raise CheckpointError(
          f"checkpoint step {step} at {step_dir} cannot be restored ({reason}). Rerun with "
          f"--config.checkpoint.skip_corrupt=true to set it aside (renamed {step}.corrupt-<time>) and "
          "resume from the newest older step that restores, or pick one with "
          "--config.checkpoint.restore_from=STEP") from error
    return Restored(step, state, meta, data_ok, step_dir)

  def set_aside(self, step: int, why: str) -> str:
    """Renames a step directory to `<step>.<why>-<time>`: kept on disk, invisible to Orbax."""
    src = self.step_dir(step)
    dst = f"{src}.{why}-{time.strftime('%Y%m%d-%H%M%S')}"
    if jax.process_index() == 0:
      os.rename(src, dst)
    _barrier(f"t5x_like_set_aside_{step}")
    self.manager.reload()
    return dst

  def _meta(self, step: int) -> dict:
    try:
      with open(os.path.join(self.step_dir(step), "meta", "metadata")) as f:
        return json.load(f)
    except (OSError, ValueError):
      return {}

  def restore_for_run(self, cfg: CheckpointConfig, abstract_state: dict, data_iterator, log) -> Restored | None:
    """What a run resumes from: the latest step, or `restore_from=STEP`; None when there is none.

    `restore_from=STEP` rolls back once: newer steps are set aside (`<step>.superseded-<time>`)
    so later saves do not collide with them. Every checkpoint stores the config it was made
    with, so a rerun of the same command, whose latest checkpoint already came from this
    rollback, resumes that latest checkpoint instead of rolling back again.
    """
    steps = self.all_steps()
    if not steps:
      return None
    latest = steps[-1]
    if cfg.restore_from.isdigit():
      step = int(cfg.restore_from)
      applied = self._meta(latest).get("config", {}).get("checkpoint", {}).get("restore_from") == cfg.restore_from
      if not applied or step == latest:
        if step not in steps:
          raise ConfigError(f"checkpoint.restore_from={step}: no such step in {self.directory}; "
                            f"available: {steps}")
        for newer in [s for s in steps if s > step]:
          log(f"[t5x_like] restore_from={step}: setting aside newer step {newer} -> "
              f"{self.set_aside(newer, 'superseded')}")
        return self.restore(step, abstract_state, data_iterator)
      log(f"[t5x_like] checkpoint.restore_from={step} was applied by an earlier start; resuming the latest "
          f"step {latest} (drop the flag to silence this)")
    skipped = []
    while (step := self.latest_step()) is not None:
      try:
        return self.restore(step, abstract_state, data_iterator)
      except CheckpointError as e:
        if not cfg.skip_corrupt:
          raise
        aside = self.set_aside(step, "corrupt")
        skipped.append(aside)
        log(f"[t5x_like] skip_corrupt: checkpoint step {step} cannot be restored "
            f"({_brief(e.__cause__) if e.__cause__ else 'failed on another process'}); set aside as {aside}")
    raise CheckpointError(
        f"no checkpoint in {self.directory} restores; set aside: {', '.join(skipped)}. Rerun to start "
        "from scratch, or seed the run with --config.checkpoint.restore_from=PATH or init_from=PATH")


# ---------------------------------------------------------------- checkpoints of other runs


def find_step_dir(path: str, key: str) -> str:
  """`path` is a step directory (has `state/`), or a checkpoints directory (its latest step)."""
  path = os.path.abspath(path)
  if os.path.isdir(os.path.join(path, "state")):
    return path
  steps = sorted(int(n) for n in os.listdir(path) if n.isdigit()) if os.path.isdir(path) else []
  if steps and os.path.isdir(os.path.join(path, str(steps[-1]), "state")):
    return os.path.join(path, str(steps[-1]))
  raise ConfigError(f"{key}={path}: not a checkpoint step directory (no state/ inside); pass one such as "
                    "WORKDIR/checkpoints/350, or the OUTPUT/0 written by `t5x-like convert --from-hf`")


def restore_path(path: str, abstract_state: dict, data_iterator=None, model_cfg: dict | None = None) -> Restored:
  """`checkpoint.restore_from=PATH`: the full state (and data position) of another run's step."""
  step_dir = find_step_dir(path, "checkpoint.restore_from")
  check_fits(step_dir, abstract_state, model_cfg, "checkpoint.restore_from")
  try:
    with _orbax_restore(), ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as c:
      state, meta, data_ok = _restore_items(step_dir, abstract_state, data_iterator,
                                            lambda args: c.restore(step_dir, args=args))
  except Exception as e:
    raise CheckpointError(f"checkpoint.restore_from={step_dir} cannot be restored ({_brief(e)}); it needs "
                          "params and optimizer state of this model (for params alone use "
                          "--config.checkpoint.init_from)") from e
  return Restored(int(jax.device_get(state["step"])), state, meta, data_ok, step_dir)


def _flat(tree: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}/"))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _listing(items: list[str], limit: int = 12) -> str:
  more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
  return "; ".join(items[:limit]) + more


def param_differences(step_dir: str, abstract_params: dict, model_cfg: dict | None = None) -> list[str]:
  """Why the params stored in `step_dir` do not fit `abstract_params`, one line per kind
  (missing, unexpected, shape mismatches, model config fields that differ from the ones
  saved with the step); empty when they fit. Reads only the checkpoint's metadata."""
  state_dir = os.path.join(step_dir, "state")
  tree = ocp.PyTreeCheckpointHandler().metadata(epath.Path(state_dir)).tree
  if not isinstance(tree, dict) or not isinstance(tree.get("params"), dict):
    return [f"{state_dir} holds no 'params'"]
  found, want = _flat(tree["params"]), _flat(abstract_params)
  missing = sorted(set(want) - set(found))
  unexpected = sorted(set(found) - set(want))
  shapes = [f"{k} expected {tuple(want[k].shape)} found {tuple(found[k].shape)}"
            for k in sorted(set(want) & set(found)) if tuple(want[k].shape) != tuple(found[k].shape)]
  if not (missing or unexpected or shapes):
    return []
  parts = [f"missing: {_listing(missing)}"] if missing else []
  if unexpected:
    parts.append(f"unexpected: {_listing(unexpected)}")
  if shapes:
    parts.append(f"shape mismatches: {_listing(shapes)}")
  theirs = _saved_model_config(step_dir)
  if theirs and model_cfg:
    diff = [f"model.{k}={model_cfg[k]!r} (checkpoint: {theirs[k]!r})" for k in sorted(model_cfg)
            if k in theirs and theirs[k] != model_cfg[k]]
    if diff:
      parts.append(f"config fields that differ from the checkpoint's: {_listing(diff)}")
  return parts


def _model_summary(abstract_params: dict) -> str:
  want = _flat(abstract_params)
  return f"{len(want)} parameters, {sum(math.prod(p.shape) for p in want.values()):,} values"


def load_params(path: str, abstract_params: dict, model_cfg: dict | None = None) -> dict:
  """`checkpoint.init_from=PATH`: only the params subtree of a step directory, restored into
  the shardings of `abstract_params`. Names and shapes must match exactly."""
  step_dir = find_step_dir(path, "checkpoint.init_from")
  try:
    diffs = param_differences(step_dir, abstract_params, model_cfg)
  except Exception as e:
    raise CheckpointError(f"checkpoint.init_from={step_dir}: cannot read its state/ ({_brief(e)})") from e
  if diffs:
    raise ConfigError("\n  ".join([f"checkpoint.init_from={step_dir} does not fit this model "
                                   f"({_model_summary(abstract_params)})", *diffs]))
  target = {"params": abstract_params}
  try:
    with _orbax_restore():
      out = ocp.PyTreeCheckpointer().restore(
          os.path.join(step_dir, "state"),
          args=ocp.args.PyTreeRestore(item=target, partial_restore=True,
                                      restore_args=ocp.checkpoint_utils.construct_restore_args(target)))
  except Exception as e:
    raise CheckpointError(f"checkpoint.init_from={step_dir}: params cannot be restored ({_brief(e)})") from e
  return out["params"]


def check_fits(step_dir: str, abstract_state: dict, model_cfg: dict | None, what: str) -> None:
  """A checkpoint of another model is a config problem, not a corrupt checkpoint: say so
  before restoring, so skip_corrupt never sets aside good checkpoints of another model."""
  try:
    diffs = param_differences(step_dir, abstract_state["params"], model_cfg)
  except Exception:
    return  # unreadable metadata: the restore reports the checkpoint as bad
  if diffs:
    raise ConfigError("\n  ".join([f"{what} at {step_dir} was written for another model than this one "
                                   f"({_model_summary(abstract_state['params'])}); train this model in a new "
                                   "--workdir, or go back to the model config it was saved with", *diffs]))


def _saved_model_config(step_dir: str) -> dict:
  """The model config stored with a step: meta.config.model (training) or meta.model (convert)."""
  try:
    with open(os.path.join(step_dir, "meta", "metadata")) as f:
      meta = json.load(f)
  except (OSError, ValueError):
    return {}
  return meta.get("model") or meta.get("config", {}).get("model") or {}
