"""A thin layer over orbax.checkpoint.CheckpointManager.

A checkpoint step directory holds three items written through one `ocp.args.Composite`:
`state` (params, optimizer state, step), `data` (each host's tf.data iterator state) and
`meta` (resolved config, versions, mesh, tokens seen). Orbax writes into a temporary
directory and renames it when every item is complete, so a process killed mid-save
leaves only a temporary directory that is never taken for a checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
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


class Checkpointer:
  def __init__(self, directory: str, cfg: CheckpointConfig):
    self.directory = os.path.abspath(directory)
    self.cfg = cfg
    options = ocp.CheckpointManagerOptions(
        max_to_keep=cfg.max_to_keep,
        keep_period=cfg.keep_period or None,
        enable_async_checkpointing=cfg.async_save,
        create=True,
        cleanup_tmp_directories=True,
    )
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state: dict, data_iterator=None, meta: dict | None = None,
           force: bool = False) -> bool:
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta or {})}
    if data_iterator is not None:
      items["data"] = DataIteratorSave(data_iterator)
    return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

  def resolve_step(self, restore_from: str) -> int | None:
    """`restore_from` is empty (latest), a step number, or a path to a step directory."""
    if not restore_from:
      return self.latest_step()
    if restore_from.isdigit():
      step = int(restore_from)
      if step not in self.all_steps():
        raise ConfigError(f"checkpoint.restore_from={step}: no such step in {self.directory}; "
                          f"available: {self.all_steps() or 'none'}")
      return step
    return None  # a path: handled by restore_path

  def restore(self, step: int, abstract_state: dict, data_iterator=None) -> tuple[dict, dict, bool]:
    """Returns (state, meta, data_restored)."""
    items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
    step_dir = os.path.join(self.directory, str(step))
    has_data = os.path.isdir(os.path.join(step_dir, "data"))
    if data_iterator is not None and has_data:
      items["data"] = DataIteratorRestore(data_iterator)
    try:
      out = self.manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # corrupt or partial files: name the step and the path
      raise CheckpointError(
          f"checkpoint step {step} at {step_dir} could not be restored ({type(e).__name__}: "
          f"{str(e).splitlines()[0][:300]}); move it away or pick another with "
          "--config.checkpoint.restore_from=STEP") from e
    data_restored = bool(out.get("data")) if "data" in items else False
    return out["state"], dict(out["meta"] or {}), data_restored

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()
