"""Saving and restoring one run's checkpoints: a thin layer over Orbax's CheckpointManager.

A step holds three items written through one `ocp.args.Composite` (layout.py): `state`,
`data` (each host's tf.data iterator) and `meta`. Nothing here deletes a checkpoint: only
Orbax's `max_to_keep`/`keep_period` policy does, after a newer save has completed. A
checkpoint that cannot be used is renamed `<step>.<why>-<time>` (Orbax ignores names that
are not step numbers) so later saves of the same step number do not collide with it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from t5x_like.checkpoint import layout
from t5x_like.checkpoint.params import check_fits
from t5x_like.checkpoint.quiet import brief, orbax_restore
from t5x_like.config import CheckpointConfig
from t5x_like.data.prepare import barrier
from t5x_like.errors import CheckpointError


class DataIteratorHandler(ocp.CheckpointHandler):
  """Saves every host's tf.data iterator with tf.train.Checkpoint, one file set per host."""

  def _prefix(self, directory: epath.Path) -> str:
    return str(directory / f"process_{jax.process_index()}_of_{jax.process_count()}")

  def save(self, directory: epath.Path, args: DataIteratorSave):
    import tensorflow as tf
    directory.mkdir(parents=True, exist_ok=True)
    tf.train.Checkpoint(iterator=args.iterator).write(self._prefix(directory))

  def restore(self, directory: epath.Path, args: DataIteratorRestore):
    import tensorflow as tf
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


def all_processes_ok(ok: bool) -> bool:
  """Every process must take the same branch after a restore, or the next collective hangs."""
  if jax.process_count() == 1:
    return ok
  from jax.experimental import multihost_utils
  return bool(np.min(multihost_utils.process_allgather(np.array([int(ok)]))))


def restore_items(step_dir: str, abstract_state: dict, data_iterator, restore_fn) -> tuple[dict, dict, bool]:
  """State, metadata and (where this process count saved one) the data iterator of a step."""
  items = {layout.STATE: ocp.args.StandardRestore(abstract_state), layout.META: ocp.args.JsonRestore()}
  if data_iterator is not None and os.path.isdir(os.path.join(step_dir, layout.DATA)):
    items[layout.DATA] = DataIteratorRestore(data_iterator)
  out = restore_fn(ocp.args.Composite(**items))
  data_ok = bool(out.get(layout.DATA)) if layout.DATA in items else False
  return out[layout.STATE], dict(out[layout.META] or {}), data_ok


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

  def meta(self, step: int) -> dict:
    return layout.read_meta(self.step_dir(step))

  # ---------------------------------------------------------------- saving

  def save(self, step: int, state: dict, data_iterator=None, meta: dict | None = None,
           force: bool = False) -> bool:
    """Starts a save (async unless checkpoint.async_save=false). A step that already exists is
    left as it is (Orbax never overwrites one): returns False."""
    self.wait()  # an error in the previous async save surfaces here, naming its step
    if step in self.all_steps():
      return False
    items = {layout.STATE: ocp.args.StandardSave(state), layout.META: ocp.args.JsonSave(meta or {})}
    if data_iterator is not None:
      items[layout.DATA] = DataIteratorSave(data_iterator)
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
        f"saving checkpoint step {step} in {self.directory} failed ({brief(e)}); the checkpoints "
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
      with orbax_restore():
        state, meta, data_ok = restore_items(step_dir, abstract_state, data_iterator,
                                             lambda args: self.manager.restore(step, args=args))
    except Exception as e:  # corrupt or partial files
      error = e
    if not all_processes_ok(error is None):
      reason = brief(error) if error else "it failed on another process"
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
    barrier(f"t5x_like_set_aside_{step}")
    self.manager.reload()
    return dst
