"""What a run starts from, decided in one place:

1. this run's own checkpoints: the latest step, or `checkpoint.restore_from=STEP` (a
   rollback, applied once); with `checkpoint.skip_corrupt` a step that fails to restore is
   set aside and the next older one tried;
2. otherwise `checkpoint.restore_from=PATH`: another run's full state (params, optimizer,
   step and data position);
3. otherwise `checkpoint.init_from=PATH`: params only, a fresh optimizer, step 0 (a warm
   start, e.g. from a converted Hugging Face model);
4. otherwise a fresh initialisation.

Everything is restored straight into this run's shardings (any mesh or process count).
"""

from __future__ import annotations

import dataclasses
import os

import jax
import orbax.checkpoint as ocp

from t5x_like.checkpoint.manager import Checkpointer, Restored, restore_items
from t5x_like.checkpoint.params import check_fits, find_step_dir, load_params
from t5x_like.checkpoint.quiet import brief, orbax_restore
from t5x_like.config import CheckpointConfig, Config, to_dict
from t5x_like.errors import CheckpointError, ConfigError


@dataclasses.dataclass
class Start:
  state: dict
  step: int = 0
  tokens_seen: float = 0.0


def resume(ckpt: Checkpointer, cfg: CheckpointConfig, abstract_state: dict, data_iterator,
           log) -> Restored | None:
  """This run's own checkpoint to resume: the latest step, or `restore_from=STEP`; None
  when there is none.

  `restore_from=STEP` rolls back once: newer steps are set aside (`<step>.superseded-<time>`)
  so later saves do not collide with them. Every checkpoint stores the config it was made
  with, so a rerun of the same command, whose latest checkpoint already came from this
  rollback, resumes that latest checkpoint instead of rolling back again.
  """
  steps = ckpt.all_steps()
  if not steps:
    return None
  latest = steps[-1]
  if cfg.restore_from.isdigit():
    step = int(cfg.restore_from)
    applied = ckpt.meta(latest).get("config", {}).get("checkpoint", {}).get("restore_from") == cfg.restore_from
    if not applied or step == latest:
      if step not in steps:
        raise ConfigError(f"checkpoint.restore_from={step}: no such step in {ckpt.directory}; "
                          f"available: {steps}")
      for newer in [s for s in steps if s > step]:
        log(f"[t5x_like] restore_from={step}: setting aside newer step {newer} -> "
            f"{ckpt.set_aside(newer, 'superseded')}")
      return ckpt.restore(step, abstract_state, data_iterator)
    log(f"[t5x_like] checkpoint.restore_from={step} was applied by an earlier start; resuming the latest "
        f"step {latest} (drop the flag to silence this)")
  skipped = []
  while (step := ckpt.latest_step()) is not None:
    try:
      return ckpt.restore(step, abstract_state, data_iterator)
    except CheckpointError as e:
      if not cfg.skip_corrupt:
        raise
      aside = ckpt.set_aside(step, "corrupt")
      skipped.append(aside)
      log(f"[t5x_like] skip_corrupt: checkpoint step {step} cannot be restored "
          f"({brief(e.__cause__) if e.__cause__ else 'failed on another process'}); set aside as {aside}")
  raise CheckpointError(
      f"no checkpoint in {ckpt.directory} restores; set aside: {', '.join(skipped)}. Rerun to start "
      "from scratch, or seed the run with --config.checkpoint.restore_from=PATH or init_from=PATH")


def restore_path(path: str, abstract_state: dict, data_iterator=None, model_cfg: dict | None = None) -> Restored:
  """`checkpoint.restore_from=PATH`: the full state (and data position) of another run's step."""
  step_dir = find_step_dir(path, "checkpoint.restore_from")
  check_fits(step_dir, abstract_state, model_cfg, "checkpoint.restore_from")
  try:
    with orbax_restore(), ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as c:
      state, meta, data_ok = restore_items(step_dir, abstract_state, data_iterator,
                                           lambda args: c.restore(step_dir, args=args))
  except Exception as e:
    raise CheckpointError(f"checkpoint.restore_from={step_dir} cannot be restored ({brief(e)}); it needs "
                          "params and optimizer state of this model (for params alone use "
                          "--config.checkpoint.init_from)") from e
  return Restored(int(jax.device_get(state["step"])), state, meta, data_ok, step_dir)


def start(cfg: Config, workdir: str, setup, data_iterator, log) -> tuple[Checkpointer | None, Start]:
  """The run's checkpointer (None with checkpoint.enabled=false) and the state to start from."""
  from t5x_like.train.state import init_state, state_from_params

  c, model_dict = cfg.checkpoint, to_dict(cfg)["model"]
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), c, model_dict) if c.enabled else None
  restored = resume(ckpt, c, setup.abstract_state, data_iterator, log) if ckpt else None
  other_run = c.restore_from if c.restore_from and not c.restore_from.isdigit() else ""
  if restored is None and other_run:
    restored = restore_path(other_run, setup.abstract_state, data_iterator, model_dict)
  elif restored is not None and (other_run or c.init_from):
    log(f"[t5x_like] {other_run or c.init_from} not used: this run resumes from its own checkpoint")
  if restored is not None:
    step = int(jax.device_get(restored.state["step"]))
    log(f"[t5x_like] resumed from step {step} ({restored.source})"
        + ("" if restored.data_restored else "; data iterator state not found for this process count, "
           "data restarts"))
    return ckpt, Start(restored.state, step, float(restored.meta.get("tokens_seen", 0.0)))
  if c.init_from:
    params = load_params(c.init_from, setup.abstract_state["params"], model_dict)
    log(f"[t5x_like] warm start: params from {c.init_from}, new optimizer state, step 0")
    return ckpt, Start(state_from_params(setup, params))
  return ckpt, Start(init_state(setup, cfg, cfg.train.seed))
