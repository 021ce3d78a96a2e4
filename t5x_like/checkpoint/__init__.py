"""Checkpoints: `start.py` decides what a run starts from, `manager.py` saves and restores
one run's steps, `params.py` moves params in and out of step directories (warm starts,
`convert`), `layout.py` is the one on-disk layout, `quiet.py` keeps a failed restore to one
line of output."""

from t5x_like.checkpoint.layout import meta_for, read_meta, saved_model_config
from t5x_like.checkpoint.manager import Checkpointer, Restored
from t5x_like.checkpoint.params import (
  check_fits,
  find_step_dir,
  load_params,
  param_differences,
  read_params,
  write_params,
)
from t5x_like.checkpoint.start import Start, restore_path, resume, start
from t5x_like.errors import CheckpointError

__all__ = ["CheckpointError", "Checkpointer", "Restored", "Start", "check_fits", "find_step_dir",
           "load_params", "meta_for", "param_differences", "read_meta", "read_params", "restore_path",
           "resume", "saved_model_config", "start", "write_params"]
