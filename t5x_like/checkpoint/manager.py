"""Saving and restoring one run's checkpoints: a thin layer over Orbax's CheckpointManager.

A step holds three items written through one `ocp.args.Composite` (layout.py): `state`,
`data` (each host's tf.data iterator) and `meta`. Nothing here deletes a checkpoint: only
Orbax's `max_to_keep`/`keep_period` policy does, after a newer save has completed. A
checkpoint that cannot be used is renamed `<step>.<why>-<time>` (Orbax ignores names that
are not step numbers) so later saves of the same step number do not collide with it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from t5x_like.checkpoint import integrity, layout
from t5x_like.checkpoint.params import check_fits
from t5x_like.checkpoint.quiet import brief, orbax_restore, quiet_orbax_logs
from t5x_like.config import CheckpointConfig
from t5x_like.data.prepare import barrier
from t5x_like.errors import CheckpointError


class DataIteratorHandler(ocp.CheckpointHandler):
  """Saves every host's tf.data iterator with tf.train.Checkpoint, one file set per host,
  with a SHA-256 of each file beside them. `restore` returns True, or `OTHER_COUNT` when the
  step was saved by another number of processes; a missing or changed file is an error."""

  def _prefix(self, directory: epath.Path, count: int | None = None) -> str:
    return str(directory / f"process_{jax.process_index()}_of_{count or jax.process_count()}")

  def save(self, directory: epath.Path, args: DataIteratorSave):
    import tensorflow as tf
    directory.mkdir(parents=True, exist_ok=True)
    prefix = self._prefix(directory)
    tf.train.Checkpoint(iterator=args.iterator).write(prefix)
    names = [n for n in os.listdir(directory) if n.startswith(os.path.basename(prefix) + ".")]
    digests = {n: integrity.file_digest(os.path.join(directory, n)) for n in sorted(names)}
    with open(prefix + DIGESTS, "w") as f:
      json.dump({"tag": args.tag, "files": digests}, f)

  def restore(self, directory: epath.Path, args: DataIteratorRestore):
    import tensorflow as tf
    prefix = self._prefix(directory)
    if not os.path.exists(prefix + DIGESTS):
      counts = {n.split("_of_")[1].split(".")[0] for n in os.listdir(directory) if "_of_" in n}
      if counts and str(jax.process_count()) not in counts:
        return OTHER_COUNT  # saved by another number of processes: the caller decides
      raise DataIteratorError(f"the data iterator of process {jax.process_index()} is missing "
                              f"({os.path.basename(prefix)}{DIGESTS} in {directory})")
    try:
      with open(prefix + DIGESTS) as f:
        saved = json.load(f)
    except (OSError, ValueError) as e:
      raise DataIteratorError(f"{prefix}{DIGESTS} is unreadable ({brief(e)})") from e
    # Steps saved before the tag existed hold the file digests alone.
    digests = saved.get("files") if isinstance(saved, dict) and "files" in saved else saved
    if not isinstance(digests, dict):
      raise DataIteratorError(f"{prefix}{DIGESTS} is not what a save writes")
    if ("files" in saved or args.tagged) and (saved.get("tag") if "files" in saved else None) != args.tag:
      # Intact files of another position (copied from another step or run): the state is good.
      raise DataLayoutError(f"the data iterator in {directory} was saved with another step or run "
                            f"({saved.get('tag') if 'files' in saved else 'no tag'!r}, this step: {args.tag!r}); "
                            "restoring it would replay or skip batches")
    for name, digest in digests.items():
      path = os.path.join(directory, name)
      if not os.path.exists(path) or integrity.file_digest(path) != digest:
        raise DataIteratorError(f"data iterator file {path} is missing or changed (SHA-256 mismatch)")
    try:
      tf.train.Checkpoint(iterator=args.iterator).read(prefix).assert_consumed()
    except (tf.errors.OpError, AssertionError, ValueError) as e:
      # The files are the ones saved (their digests match): the pipeline they describe is
      # not this run's (another t5x_like version's reader, or other data settings).
      raise DataLayoutError(f"the data iterator saved in {directory} does not fit this run's input "
                            f"pipeline ({brief(e)}); its files are intact. It was saved by an input pipeline of "
                            "another layout (an earlier t5x_like, or changed data settings)") from e
    return True

  def metadata(self, directory: epath.Path):
    return None


DIGESTS = ".sha256.json"
OTHER_COUNT = "other_process_count"


class DataIteratorError(RuntimeError):
  """A data-iterator file of a step is missing or changed."""


class DataLayoutError(RuntimeError):
  """A step's intact data iterator that this run's input pipeline cannot take: the
  checkpoint is good, only its data position does not fit."""


@ocp.args.register_with_handler(DataIteratorHandler, for_save=True)
@dataclasses.dataclass
class DataIteratorSave(ocp.args.CheckpointArgs):
  iterator: Any
  tag: str = ""  # layout.data_tag of the step


@ocp.args.register_with_handler(DataIteratorHandler, for_restore=True)
@dataclasses.dataclass
class DataIteratorRestore(ocp.args.CheckpointArgs):
  iterator: Any
  tag: str = ""
  tagged: bool = False  # the step was saved with a tag (its metadata records the training files)


@dataclasses.dataclass
class KeepLastHealthy:
  """Orbax preservation policy: the newest healthy step is kept as long as any newer step
  exists, whatever max_to_keep says, so retention never leaves only steps of a divergence.

  A step is healthy when it was saved outside a streak of non-finite steps and is not the
  step just before one: the state saved at step k holds update k, which step k + 1 is the
  first to run on, so a streak starting at step s makes step s - 1 suspect as well."""

  directory: str
  known: dict = dataclasses.field(default_factory=dict)  # step -> healthy

  def __post_init__(self):
    steps = sorted(int(n) for n in os.listdir(self.directory) if n.isdigit()) if os.path.isdir(self.directory) else []
    for step in steps:
      meta = layout.read_meta(os.path.join(self.directory, str(step)))
      if meta:
        self.record(step, meta)
      else:
        self.known[step] = False  # unreadable: not a step to rely on

  def record(self, step: int, meta: dict) -> None:
    """Notes a saved step (Orbax asks before the new step's files exist)."""
    streak = meta.get("nonfinite") or {}
    count = int(streak.get("count", 0))
    self.known[step] = count == 0
    if count:
      first = int(streak.get("last", step)) - count + 1
      for k in self.known:
        if k >= first - 1:
          self.known[k] = False

  def healthy(self, step: int) -> bool:
    return self.known.get(step, False)

  def should_preserve(self, checkpoints, *, context=None) -> list[bool]:
    healthy = [self.healthy(c.step) for c in checkpoints]
    keep = [False] * len(checkpoints)
    newest = max((i for i, h in enumerate(healthy) if h), default=None)
    if newest is not None:
      keep[newest] = True
    return keep


def is_healthy(meta: dict) -> bool:
  """Saved outside a streak of non-finite steps (steps saved before this was recorded count)."""
  return int((meta.get("nonfinite") or {}).get("count", 0)) == 0


@dataclasses.dataclass
class Restored:
  step: int
  state: dict
  meta: dict
  data_restored: bool | str  # True, False (not asked for) or OTHER_COUNT
  source: str  # the step directory it came from


def all_processes_ok(ok: bool) -> bool:
  """Every process must take the same branch after a restore, or the next collective hangs."""
  if jax.process_count() == 1:
    return ok
  from jax.experimental import multihost_utils
  return bool(np.min(multihost_utils.process_allgather(np.array([int(ok)]))))


def restore_items(step_dir: str, abstract_state: dict, data_iterator, restore_fn) -> tuple[dict, dict, bool | str]:
  """State, metadata and (when `data_iterator` is given) the data iterator of a step, each
  verified: the metadata's digest, every array's sums, the iterator files' SHA-256."""
  meta = layout.read_meta(step_dir)
  if not layout.meta_intact(meta):
    raise IntegrityError(f"{os.path.join(step_dir, layout.META_FILE)} is missing, unreadable or changed")
  items = {layout.STATE: ocp.args.StandardRestore(abstract_state)}
  if data_iterator is not None:
    if not os.path.isdir(os.path.join(step_dir, layout.DATA)):
      raise DataIteratorError(f"{os.path.join(step_dir, layout.DATA)} (the data iterator) is missing")
    items[layout.DATA] = DataIteratorRestore(data_iterator, layout.data_tag(meta), "train_input" in meta)
  out = restore_fn(ocp.args.Composite(**items))
  state = out[layout.STATE]
  expected = (meta.get("integrity") or {}).get("arrays")
  if expected is not None:
    bad = integrity.mismatches(state, expected)
    if bad:
      raise IntegrityError(f"{len(bad)} array(s) differ from the checksums written at save time "
                           f"({', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''})")
  return state, meta, out.get(layout.DATA, False) if data_iterator is not None else False


class IntegrityError(RuntimeError):
  """A step whose bytes are not the ones that were saved."""


class Checkpointer:
  def __init__(self, directory: str, cfg: CheckpointConfig, model_cfg: dict | None = None):
    self.directory = os.path.abspath(directory)
    self.cfg = cfg
    strays = [n for n in (os.listdir(self.directory) if os.path.isdir(self.directory) else [])
              if n.isdigit() and not os.path.isdir(os.path.join(self.directory, n))]
    if strays:  # Orbax would pass over it, then write that step over it
      raise CheckpointError(f"{os.path.join(self.directory, strays[0])} is not a checkpoint step directory (a file "
                            "named like one); move it out of the checkpoints directory and rerun")
    self.model_cfg = model_cfg  # the run's model config as a dict, for clearer mismatch errors
    self.health = KeepLastHealthy(self.directory)
    policies = [ocp.checkpoint_managers.LatestN(cfg.max_to_keep), self.health]
    if cfg.keep_period:
      policies.append(ocp.checkpoint_managers.EveryNSteps(cfg.keep_period))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
        enable_async_checkpointing=cfg.async_save,
        create=True,
        cleanup_tmp_directories=True,
    )
    quiet_orbax_logs()
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

  def last_healthy_step(self) -> int | None:
    """The newest step saved outside a streak of non-finite steps."""
    return max((s for s in self.all_steps() if self.health.healthy(s)), default=None)

  # ---------------------------------------------------------------- saving

  def save(self, step: int, state: dict, data_iterator=None, meta: dict | None = None,
           force: bool = False) -> bool:
    """Starts a save (async unless checkpoint.async_save=false). A step that already exists is
    left as it is (Orbax never overwrites one): returns False."""
    self.wait()  # an error in the previous async save surfaces here, naming its step
    if step in self.all_steps():
      return False
    meta = dict(meta or {}, integrity={"algorithm": integrity.ALGORITHM, "arrays": integrity.array_sums(state)})
    meta["digest"] = integrity.meta_digest(meta)
    self.health.record(step, meta)
    items = {layout.STATE: ocp.args.StandardSave(state), layout.META: ocp.args.JsonSave(meta)}
    if data_iterator is not None:
      items[layout.DATA] = DataIteratorSave(data_iterator, layout.data_tag(meta))
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
    self._in_flight = None

  def poll(self):
    """Raises the error of a background save as soon as it has finished failing (called
    every step, so a full disk is reported at the step it happened, not at the next save).
    With several processes the save finishes at different times on each, so the error waits
    for the next save or the end of the run, which every process reaches together."""
    if (self._in_flight is not None and jax.process_count() == 1
        and not self.manager.is_saving_in_progress()):
      self.wait()

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
      if isinstance(error, DataLayoutError):  # a good checkpoint: never advise setting it aside
        raise CheckpointError(
            f"checkpoint step {step} at {step_dir}: {error}. Resume it with "
            "--config.checkpoint.reset_data_iterator=true: the model and optimizer state restore as "
            "saved and the data stream restarts past the tokens already seen") from error
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
    self.health.known.pop(step, None)  # a new step of this number may be saved later
    self.manager.reload()
    return dst
