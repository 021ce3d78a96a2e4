"""The one layout of a checkpoint step directory, written by training and by `convert`:

  <step>/state/     params, optimizer state and step (Orbax StandardSave); a converted
                    model holds params only
  <step>/data/      each host's tf.data iterator (training only)
  <step>/meta/metadata   JSON: {"step", "tokens_seen", "config" (the resolved config, or
                    {"model": ...} for a converted model), "mesh", "process_count",
                    "versions", "nonfinite" (the streak of skipped steps it was saved in),
                    "train_window" (the train losses since the last logging step), "source", "integrity" (checksums of every array), "digest" (of the rest)}
  <step>/data/process_<i>_of_<n>.sha256.json   SHA-256 of that host's iterator files and
                    the step's `data_tag` (its step and config digest)

Orbax writes a step into a temporary directory and renames it when every item is
complete, so a process killed mid-save leaves nothing that looks like a step.
"""

from __future__ import annotations

import hashlib
import json
import os

import jax

STATE, DATA, META = "state", "data", "meta"
META_FILE = os.path.join(META, "metadata")


def meta_for(cfg_dict: dict, *, step: int, tokens_seen: float = 0.0, mesh_shape: dict | None = None,
             source: str = "", nonfinite: dict | None = None, train_window: list | None = None) -> dict:
  return {"step": step, "tokens_seen": tokens_seen, "config": cfg_dict, "mesh": mesh_shape or {},
          "process_count": jax.process_count(), "versions": {"jax": jax.__version__},
          "nonfinite": nonfinite or {"count": 0, "last": 0}, "train_window": train_window or [],
          **({"source": source} if source else {})}


def read_meta(step_dir: str) -> dict:
  """A step's metadata ({} when missing or unreadable)."""
  try:
    with open(os.path.join(step_dir, META_FILE)) as f:
      meta = json.load(f)
  except (OSError, ValueError):
    return {}
  return meta if isinstance(meta, dict) else {}


def meta_intact(meta: dict) -> bool:
  """Read and unchanged: its digest matches. Metadata saved with array checksums always
  carries a digest, so one without is taken only when it has no checksums either (a step
  written before either existed). Against accidents, not tampering: whoever rewrites the
  metadata can rewrite its digest."""
  from t5x_like.checkpoint import integrity

  if not meta:
    return False
  if "digest" not in meta:  # this version's steps also record their training files
    return "integrity" not in meta and "train_input" not in meta
  return meta["digest"] == integrity.meta_digest(meta)


def data_tag(meta: dict) -> str:
  """What a step's data iterator is saved with and checked against on restore: its step
  and a digest of its run's config, both in the (digested) metadata, so iterator files
  copied in from another step or run are refused rather than replaying or skipping data."""
  config = json.dumps(meta.get("config"), sort_keys=True, separators=(",", ":"), default=str)
  return f"step {meta.get('step')}, config {hashlib.sha256(config.encode()).hexdigest()[:16]}"


def saved_model_config(meta: dict) -> dict:
  """The model config a step was written with ({} when unknown). Checkpoints converted
  before this layout kept it at meta["model"]."""
  return (meta.get("config") or {}).get("model") or meta.get("model") or {}


def is_step_dir(path: str) -> bool:
  return os.path.isdir(os.path.join(path, STATE))
