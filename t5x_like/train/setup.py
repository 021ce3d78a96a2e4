"""The one place a run's compute is assembled: mesh and rules -> parallelism checks ->
abstract state and shardings -> jitted train and eval steps. The trainer, the CLI, the
benchmarks and the tests all start from `make_setup(cfg)`, then `init_state` or a restore."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax

from t5x_like.config import Config, check_parallelism
from t5x_like.layers.attention import attention_for
from t5x_like.layers.transformer import remat_for
from t5x_like.runtime import data_parallel_size, make_mesh, rules_from_config
from t5x_like.train.state import TrainSetup, build_setup, init_state
from t5x_like.train.step import batch_sharding, make_eval_step, make_train_step

__all__ = ["TrainSetup", "attention_label", "init_state", "make_setup", "remat_label"]


def make_setup(cfg: Config, devices: Sequence[jax.Device] | None = None, *,
               check: bool = True) -> TrainSetup:
  """Builds the mesh over `devices` (default: all), checks that batch, heads and MLP width
  divide over it, and returns the abstract state, its shardings and the jitted steps.
  Nothing is allocated on the devices yet. `check=False` skips the divisibility checks: an
  axis that does not divide a dimension is then dropped for it (replicated), which tests
  use on purpose."""
  mesh = make_mesh(cfg.mesh, devices)
  rules = rules_from_config(cfg.mesh)
  platform = mesh.devices.flat[0].platform  # `auto` settings resolve for the compile target
  remat = remat_for(cfg.model.remat_policy, platform)
  attention = attention_for(cfg.model.attention_impl, platform)
  cfg = dataclasses.replace(cfg, model=dataclasses.replace(
      cfg.model, remat_policy=remat, attention_impl=attention))
  if check:
    check_parallelism(cfg, dict(mesh.shape), data_parallel_size(mesh, rules), jax.process_count())
  setup = build_setup(cfg, mesh, rules)
  setup.train_step = make_train_step(setup, cfg)
  setup.eval_step = make_eval_step(setup)
  setup.batch_sharding = batch_sharding(setup)
  setup.remat_policy, setup.attention_impl = remat, attention
  return setup


def _label(asked: str, compiled: str) -> str:
  return asked if asked == compiled else f"{asked} ({compiled})"


def remat_label(cfg: Config, setup: TrainSetup) -> str:
  """The remat policy as configured, with what it compiled to when that differs: `auto (dots)`."""
  return _label(cfg.model.remat_policy, setup.remat_policy)


def attention_label(cfg: Config, setup: TrainSetup) -> str:
  """`model.attention_impl` as configured and as compiled: `auto (chunked)`."""
  return _label(cfg.model.attention_impl, setup.attention_impl)
