"""What a run starts from, decided in one place:

1. this run's own checkpoints: the latest step, or `checkpoint.restore_from=STEP` (a
   rollback, applied once); with `checkpoint.skip_corrupt` a step that fails to restore or
   to verify is set aside and the next older one tried;
2. otherwise `checkpoint.restore_from=PATH`: another run's full state (params, optimizer,
   step and data position);
3. otherwise `checkpoint.init_from=PATH`: params only, a fresh optimizer, step 0 (a warm
   start, e.g. from a converted Hugging Face model);
4. otherwise a fresh initialisation.

Everything is restored straight into this run's shardings (any mesh or process count).
The data position is restored with the state when the data config is unchanged; a new
batch size or seq_len (or `checkpoint.reset_data_iterator=true`) restarts the stream
past the tokens already seen instead, and any other data change must say so.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import orbax.checkpoint as ocp

from t5x_like.checkpoint.manager import (
  OTHER_COUNT,
  Checkpointer,
  DataLayoutError,
  Restored,
  restore_items,
)
from t5x_like.checkpoint.params import check_fits, find_step_dir, load_params, merge_params
from t5x_like.checkpoint.quiet import brief, orbax_restore
from t5x_like.config import CheckpointConfig, Config, from_dict, to_dict
from t5x_like.config.loading import flatten
from t5x_like.errors import CheckpointError, ConfigError

# Data fields that do not change the training stream (eval inputs, pipeline threads).
_STREAM_NEUTRAL = {"eval_files", "num_parallel_calls", "tfds.eval_split", "synthetic.eval_docs"}


@dataclasses.dataclass
class Start:
  state: dict
  step: int = 0
  tokens_seen: float = 0.0
  nonfinite_count: int = 0  # the streak of skipped steps the checkpoint was saved in
  nonfinite_last: int = 0
  train_window: list = dataclasses.field(default_factory=list)  # losses since the last log


def data_changes(saved: dict, cfg: Config) -> tuple[list[str], list[str]]:
  """(reshaping changes: train.batch_size, data.seq_len; other changes of the training
  stream) between a checkpoint's config and this one, as 'key: old -> new'."""
  old, new = flatten(saved.get("data", {})), flatten(to_dict(cfg)["data"])
  old["train.batch_size"] = saved.get("train", {}).get("batch_size")
  new["train.batch_size"] = cfg.train.batch_size
  diff = {k: (old.get(k), new.get(k)) for k in set(old) | set(new)
          if old.get(k) != new.get(k) and k not in _STREAM_NEUTRAL and k in old}
  shape = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()) if k in ("train.batch_size", "seq_len")]
  other = [f"data.{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items())
           if k not in ("train.batch_size", "seq_len")]
  return [s.replace("seq_len", "data.seq_len", 1) if s.startswith("seq_len") else s for s in shape], other


def _saved_config(meta: dict) -> dict:
  """A step's config in today's layout (older checkpoints used flat data keys)."""
  try:
    return to_dict(from_dict(meta.get("config") or {}))
  except ConfigError:
    return meta.get("config") or {}


def _restore_data(meta: dict, cfg: Config, what: str, log, feed=None) -> bool:
  """Whether to restore the saved data position with `what` (a step), or restart the stream."""
  saved = _saved_config(meta) if meta.get("config") else {}
  if not saved:
    return True
  from t5x_like.data.prepare import input_changes

  saved_files, files_now = meta.get("train_input") or {}, getattr(feed, "train_input", None) or {}
  files = input_changes(saved_files, files_now)
  shape, other = data_changes(saved, cfg)
  if not cfg.checkpoint.reset_data_iterator:
    if other:  # first: a changed setting can explain changed files (the built-in corpus's seed)
      raise ConfigError(f"the data config differs from {what}'s ({'; '.join(other)}), so its saved data position "
                        "does not fit this input; go back to the old values, or restart the data stream (past the "
                        "tokens already seen) with --config.checkpoint.reset_data_iterator=true")
    if files:
      raise ConfigError(f"the training files differ from those {what} read ({'; '.join(files)}), so its saved "
                        "data position belongs to another stream; put the files back, or restart the data stream "
                        "over these files (past the tokens already seen) with "
                        "--config.checkpoint.reset_data_iterator=true")
  optimizer = [f"{k}: {a!r} -> {b!r}" for k, a, b in _section_diffs(saved, cfg, ("optimizer", "train.steps"))]
  if optimizer:
    log(f"[t5x_like] notice: the schedule differs from {what}'s ({'; '.join(optimizer)}); training goes on "
        "with the new values from the restored step")
  if cfg.checkpoint.reset_data_iterator:
    return False
  if shape:
    log(f"[t5x_like] {'; '.join(shape)} since {what}: the data stream restarts past the tokens already seen")
    return False
  return True


def _section_diffs(saved: dict, cfg: Config, keys) -> list[tuple[str, object, object]]:
  old, new = flatten(saved), flatten(to_dict(cfg))
  return [(k, old[k], new[k]) for k in sorted(new) if any(k == p or k.startswith(p + ".") for p in keys)
          and k in old and old[k] != new[k]]


def _restore(ckpt: Checkpointer, step: int, setup, feed, cfg: Config, log) -> Restored:
  data = feed is not None and _restore_data(ckpt.meta(step), cfg, f"checkpoint step {step}", log, feed)
  return ckpt.restore(step, setup.abstract_state, feed.train_iterator if data else None)


def resume(ckpt: Checkpointer, cfg: Config, setup, feed, log) -> Restored | None:
  """This run's own checkpoint to resume: the latest step, or `restore_from=STEP`; None
  when there is none.

  `restore_from=STEP` rolls back once: newer steps are set aside (`<step>.superseded-<time>`)
  so later saves do not collide with them. Every checkpoint stores the config it was made
  with, so a rerun of the same command, whose latest checkpoint already came from this
  rollback, resumes that latest checkpoint instead of rolling back again.
  """
  c: CheckpointConfig = cfg.checkpoint
  steps = ckpt.all_steps()
  if not steps:
    return None
  latest = steps[-1]
  if c.restore_from.isdigit():
    step = int(c.restore_from)
    applied = ckpt.meta(latest).get("config", {}).get("checkpoint", {}).get("restore_from") == c.restore_from
    if not applied or step == latest:
      if step not in steps:
        raise ConfigError(f"checkpoint.restore_from={step}: no such step in {ckpt.directory}; "
                          f"available: {steps}")
      for newer in [s for s in steps if s > step]:
        log(f"[t5x_like] restore_from={step}: setting aside newer step {newer} -> "
            f"{ckpt.set_aside(newer, 'superseded')}")
      return _restore(ckpt, step, setup, feed, cfg, log)
    log(f"[t5x_like] checkpoint.restore_from={step} was applied by an earlier start; resuming the latest "
        f"step {latest} (drop the flag to silence this)")
  skipped = []
  while (step := ckpt.latest_step()) is not None:
    try:
      return _restore(ckpt, step, setup, feed, cfg, log)
    except CheckpointError as e:
      if not c.skip_corrupt or isinstance(e.__cause__, DataLayoutError):  # a good step is never set aside
        raise
      aside = ckpt.set_aside(step, "corrupt")
      skipped.append(aside)
      log(f"[t5x_like] skip_corrupt: checkpoint step {step} cannot be restored "
          f"({brief(e.__cause__) if e.__cause__ else 'failed on another process'}); set aside as {aside}")
  raise CheckpointError(
      f"no checkpoint in {ckpt.directory} restores; set aside: {', '.join(skipped)}. Rerun to start "
      "from scratch, or seed the run with --config.checkpoint.restore_from=PATH or init_from=PATH")


def restore_path(path: str, cfg: Config, setup, feed, log) -> Restored:
  """`checkpoint.restore_from=PATH`: the full state (and data position) of another run's step."""
  from t5x_like.checkpoint.layout import read_meta

  step_dir = find_step_dir(path, "checkpoint.restore_from")
  check_fits(step_dir, setup.abstract_state, to_dict(cfg)["model"], "checkpoint.restore_from")
  data = _restore_data(read_meta(step_dir), cfg, step_dir, log, feed)
  try:
    with orbax_restore(), ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as c:
      state, meta, data_ok = restore_items(step_dir, setup.abstract_state, feed.train_iterator if data else None,
                                           lambda args: c.restore(step_dir, args=args))
  except DataLayoutError as e:
    raise CheckpointError(f"checkpoint.restore_from={step_dir}: {e}. Take its state with a fresh data stream "
                          "(past the tokens it had seen) with --config.checkpoint.reset_data_iterator=true") from e
  except Exception as e:
    raise CheckpointError(f"checkpoint.restore_from={step_dir} cannot be restored ({brief(e)}); it needs "
                          "params and optimizer state of this model (for params alone use "
                          "--config.checkpoint.init_from)") from e
  return Restored(int(jax.device_get(state["step"])), state, meta, data_ok, step_dir)


def start(cfg: Config, workdir: str, setup, feed, log) -> tuple[Checkpointer | None, Start]:
  """The run's checkpointer (None with checkpoint.enabled=false) and the state to start from."""
  from t5x_like.train.state import init_state, state_from_params

  c, model_dict = cfg.checkpoint, to_dict(cfg)["model"]
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), c, model_dict) if c.enabled else None
  restored = resume(ckpt, cfg, setup, feed, log) if ckpt else None
  other_run = c.restore_from if c.restore_from and not c.restore_from.isdigit() else ""
  if restored is None and other_run:
    restored = restore_path(other_run, cfg, setup, feed, log)
  elif restored is not None and (other_run or c.init_from):
    log(f"[t5x_like] {other_run or c.init_from} not used: this run resumes from its own checkpoint")
  if restored is not None:
    step = int(jax.device_get(restored.state["step"]))
    tokens = float(restored.meta.get("tokens_seen", 0.0))
    note = ""
    if restored.data_restored is not True:
      if restored.data_restored == OTHER_COUNT:
        note = f"; its data position was saved by {restored.meta.get('process_count')} process(es)"
      skipped = feed.restart_after(tokens)
      note += f"; the data stream restarts, skipping {skipped} batch(es) ({tokens:,.0f} tokens already seen)"
    log(f"[t5x_like] resumed from step {step} ({restored.source}){note}")
    streak = restored.meta.get("nonfinite") or {}
    return ckpt, Start(restored.state, step, tokens, int(streak.get("count", 0)), int(streak.get("last", 0)),
                       list(restored.meta.get("train_window") or []))
  if c.init_from:
    params, fresh = load_params(c.init_from, setup.abstract_state["params"], model_dict)
    note = ""
    if fresh:  # a task head the pretrained model lacks starts from a fresh initialisation
      params = merge_params(init_state(setup, cfg, cfg.train.seed)["params"], params)
      note = f"; new: {', '.join(fresh)}"
    log(f"[t5x_like] warm start: params from {c.init_from}, new optimizer state, step 0{note}")
    return ckpt, Start(state_from_params(setup, params))
  return ckpt, Start(init_state(setup, cfg, cfg.train.seed))
