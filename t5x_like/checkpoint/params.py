"""Params in and out of step directories, for warm starts (`checkpoint.init_from`),
`t5x-like convert`, and the check that a checkpoint belongs to this model at all."""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from t5x_like.checkpoint import integrity, layout
from t5x_like.checkpoint.quiet import brief, orbax_restore
from t5x_like.errors import CheckpointError, ConfigError


def find_step_dir(path: str, key: str) -> str:
  """`path` is a step directory (has `state/`), a checkpoints directory (its newest
  complete step) or a run's workdir (its checkpoints' newest)."""
  path = os.path.abspath(path)
  if layout.is_step_dir(path):
    return path
  steps = sorted(int(n) for n in os.listdir(path) if n.isdigit()) if os.path.isdir(path) else []
  # The newest complete step (a step directory without state/ is not one: a bare or
  # half-copied folder must not hide the steps before it).
  complete = [s for s in steps if layout.is_step_dir(os.path.join(path, str(s)))]
  if complete:
    return os.path.join(path, str(complete[-1]))
  if not steps and os.path.isdir(os.path.join(path, "checkpoints")):  # a run's workdir: its latest step
    return find_step_dir(os.path.join(path, "checkpoints"), key)
  what = ("does not exist" if not os.path.exists(path) else
          "is not a complete checkpoint step (no state/ inside)"
          if os.path.isdir(path) and not steps and os.path.basename(path).isdigit() else
          "holds no checkpoint yet (no step directories)" if os.path.isdir(path) and not steps else
          f"holds no complete checkpoint (no state/ in {', '.join(map(str, steps[-3:]))})" if steps else
          "is not a checkpoint step directory (no state/ inside)")
  raise ConfigError(f"{key}={path} {what}; pass a step directory such as WORKDIR/checkpoints/350 (or "
                    "WORKDIR/checkpoints for its latest), or the OUTPUT/0 written by `t5x-like convert --from-hf`")


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


# Parameters a fine-tuning model adds to a pretrained body (models/heads.py): a warm start
# initialises them afresh when the checkpoint lacks them.
TASK_HEADS = ("task_head", "nsp_head")
# The pretrained LM head's parameters, which a task head (model.head != lm) leaves unread.
LM_HEAD = ("mlm_dense", "mlm_dense_bias", "mlm_norm", "output_bias", "head", "nsp_head")


def _compare(step_dir: str, abstract_params: dict) -> tuple[dict, dict]:
  state_dir = os.path.join(step_dir, layout.STATE)
  tree = ocp.PyTreeCheckpointHandler().metadata(epath.Path(state_dir)).tree
  if not isinstance(tree, dict) or not isinstance(tree.get("params"), dict):
    raise CheckpointError(f"{state_dir} holds no 'params'")
  return _flat(tree["params"]), _flat(abstract_params)


def param_differences(step_dir: str, abstract_params: dict, model_cfg: dict | None = None, *,
                      new_heads: bool = False) -> list[str]:
  """Why the params stored in `step_dir` do not fit `abstract_params`, one line per kind
  (missing, unexpected, shape mismatches, model config fields that differ from the ones
  saved with the step); empty when they fit. Reads only the checkpoint's metadata.
  `new_heads`: a warm start, where task heads may be missing and LM heads left unread."""
  try:
    found, want = _compare(step_dir, abstract_params)
  except CheckpointError as e:
    return [str(e)]
  missing = sorted(set(want) - set(found))
  unexpected = sorted(set(found) - set(want))
  if new_heads:
    missing = [k for k in missing if k.split("/")[0] not in TASK_HEADS]
    unexpected = [k for k in unexpected if k.split("/")[0] not in LM_HEAD]
  shapes = [f"{k} expected {tuple(want[k].shape)} found {tuple(found[k].shape)}"
            for k in sorted(set(want) & set(found)) if tuple(want[k].shape) != tuple(found[k].shape)]
  if not (missing or unexpected or shapes):
    return []
  parts = [f"missing: {_listing(missing)}"] if missing else []
  if unexpected:
    parts.append(f"unexpected: {_listing(unexpected)}")
  if shapes:
    parts.append(f"shape mismatches: {_listing(shapes)}")
  theirs = layout.saved_model_config(layout.read_meta(step_dir))
  if theirs and model_cfg:
    ignore = {"head", "num_labels", "pooling", "nsp", "contrastive_temperature"} if new_heads else set()
    diff = [f"model.{k}={model_cfg[k]!r} (checkpoint: {theirs[k]!r})" for k in sorted(model_cfg)
            if k in theirs and theirs[k] != model_cfg[k] and k not in ignore]
    if diff:
      parts.append(f"config fields that differ from the checkpoint's: {_listing(diff)}")
  return parts


def _subtree(tree: dict, keep) -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      sub = _subtree(v, lambda path, k=k: keep(f"{k}/{path}"))
      if sub:
        out[k] = sub
    elif keep(k):
      out[k] = v
  return out


def _model_summary(abstract_params: dict) -> str:
  want = _flat(abstract_params)
  return f"{len(want)} parameters, {sum(math.prod(p.shape) for p in want.values()):,} values"


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


def load_params(path: str, abstract_params: dict, model_cfg: dict | None = None,
                key: str = "checkpoint.init_from") -> tuple[dict, list[str]]:
  """`checkpoint.init_from=PATH`: the params subtree of a step directory, restored into the
  shardings of `abstract_params`, and the names of the task-head params the checkpoint
  lacks (to initialise afresh). Every other name and shape must match; the checkpoint's
  LM head may go unread when the model has a task head. `key` names PATH in messages."""
  step_dir = find_step_dir(path, key)
  try:
    diffs = param_differences(step_dir, abstract_params, model_cfg, new_heads=True)
    found, want = _compare(step_dir, abstract_params)
  except Exception as e:
    raise CheckpointError(f"{key}={step_dir}: cannot read its state/ ({brief(e)})") from e
  if diffs:
    raise ConfigError("\n  ".join([f"{key}={step_dir} does not fit this model "
                                   f"({_model_summary(abstract_params)})", *diffs]))
  fresh = sorted(set(want) - set(found))
  target = {"params": _subtree(abstract_params, lambda k: k in found)}
  try:
    with orbax_restore():
      out = ocp.PyTreeCheckpointer().restore(
          os.path.join(step_dir, layout.STATE),
          args=ocp.args.PyTreeRestore(item=target, partial_restore=True,
                                      restore_args=ocp.checkpoint_utils.construct_restore_args(target)))
  except Exception as e:
    raise CheckpointError(f"{key}={step_dir}: params cannot be restored ({brief(e)})") from e
  read = {"['params']" + "".join(f"['{p}']" for p in k.split("/")) for k in want if k in found}
  _verify(step_dir, out, lambda k: k in read, f"{key}={step_dir}")
  return out["params"], fresh


def _verify(step_dir: str, restored: dict, chosen, where: str) -> None:
  """The restored arrays whose keys pass `chosen` against the checksums written at save
  time (a step written before checksums existed is taken as it is). Metadata that cannot
  be read or was changed leaves nothing to check against: that step is refused."""
  meta = layout.read_meta(step_dir)
  if not layout.meta_intact(meta):
    raise CheckpointError(f"{where}: {os.path.join(step_dir, layout.META_FILE)} is missing, unreadable or changed, "
                          "so its arrays cannot be checked against their save-time checksums; the checkpoint is "
                          "corrupt (use another step)")
  expected = (meta.get("integrity") or {}).get("arrays")
  if expected is not None:
    bad = integrity.mismatches(restored, {k: v for k, v in expected.items() if chosen(k)})
    if bad:
      raise CheckpointError(f"{where}: {len(bad)} array(s) differ from the checksums written at save time "
                            f"({', '.join(bad[:4])}); the checkpoint is corrupt")


def merge_params(base: dict, override: dict) -> dict:
  """`base` with every leaf that `override` has replaced by override's."""
  return {k: (merge_params(v, override[k]) if isinstance(v, dict) else override[k]) if k in override else v
          for k, v in base.items()}


def write_params(directory: str, params: dict, model_cfg: dict, source: str,
                 extra: dict | None = None) -> str:
  """Writes `params` as step 0 of a new checkpoints directory (what `convert --from-hf`
  makes), in the layout training writes, with `extra` entries in its metadata; returns the
  step directory."""
  out = os.path.join(os.path.abspath(directory), "0")
  if os.path.exists(out):
    raise CheckpointError(f"{out} already exists; choose another --output")
  meta = dict(layout.meta_for({"model": model_cfg}, step=0, source=source), **(extra or {}))
  meta["integrity"] = {"algorithm": integrity.ALGORITHM, "arrays": integrity.array_sums({"params": params})}
  meta["digest"] = integrity.meta_digest(meta)
  with ocp.CheckpointManager(os.path.dirname(out)) as mgr:
    mgr.save(0, args=ocp.args.Composite(**{layout.STATE: ocp.args.StandardSave({"params": params}),
                                           layout.META: ocp.args.JsonSave(meta)}))
  return out


def read_params(step_dir: str) -> tuple[dict, dict]:
  """(params as host numpy arrays, the model config saved with them) of a step directory."""
  step_dir = os.path.abspath(step_dir)
  meta = layout.read_meta(step_dir)
  model = layout.saved_model_config(meta)
  if not meta and os.path.exists(os.path.join(step_dir, layout.META_FILE)):
    raise CheckpointError(f"{os.path.join(step_dir, layout.META_FILE)} is unreadable (garbled or cut short): "
                          "the checkpoint is corrupt; use another step")
  if not model:
    raise CheckpointError(f"{step_dir} is not a t5x_like checkpoint step directory "
                          f"(no model config in {layout.META_FILE})")
  state_dir = os.path.join(step_dir, layout.STATE)
  try:
    # The params alone, each onto this process's first device whatever mesh wrote them (a
    # restore without a target insists on the writer's devices), and no optimizer state.
    tree = ocp.PyTreeCheckpointHandler().metadata(epath.Path(state_dir)).tree
    one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = {"params": jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one),
                                     tree["params"])}
    with orbax_restore():
      restored = ocp.PyTreeCheckpointer().restore(
          state_dir, args=ocp.args.PyTreeRestore(item=target, partial_restore=True,
                                                 restore_args=ocp.checkpoint_utils.construct_restore_args(target)))
  except Exception as e:
    raise CheckpointError(f"{step_dir}: params cannot be read ({brief(e)})") from e
  _verify(step_dir, restored, lambda k: k.startswith("['params']"), step_dir)
  return jax.tree.map(jax.device_get, restored["params"]), model
