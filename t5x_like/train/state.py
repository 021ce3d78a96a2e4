"""Abstract model construction, parameter shardings and the sharded initialisation.

The full model is never built on one device: `nnx.eval_shape` gives shapes and logical
axes, the rules turn those into NamedShardings, and a jitted init writes each shard where
it lives.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from t5x_like.config import Config
from t5x_like.models import create_model, family_class
from t5x_like.runtime import logical_to_spec
from t5x_like.train.optimizer import make_optimizer


def _is_axes(x):
  return isinstance(x, tuple) and all(a is None or isinstance(a, str) for a in x)


@dataclasses.dataclass
class TrainSetup:
  graphdef: object  # nnx GraphDef of the model
  abstract_params: dict  # pure dict of ShapeDtypeStruct
  logical_axes: dict  # pure dict of tuples of logical names
  param_shardings: dict
  tx: optax.GradientTransformation
  state_shardings: dict  # {"step", "params", "opt_state"}
  abstract_state: dict  # ShapeDtypeStructs with shardings (restore targets)
  mesh: Mesh
  rules: tuple
  model_class: type  # the family (models/base.py protocol)
  # Filled in by train/setup.py:make_setup, the one place a run's pieces are assembled.
  train_step: object = None  # jitted (state, batch, rng) -> (state, metrics), state donated
  eval_step: object = None  # jitted (params, batch) -> loss sums
  batch_sharding: object = None
  remat_policy: str = "none"  # model.remat_policy as compiled (`auto` resolved for the platform)
  attention_impl: str = "xla"  # model.attention_impl as compiled (likewise)


def abstract_model(cfg: Config):
  """Returns (graphdef, abstract params as a pure dict, logical axes as a pure dict)."""
  abs_model = nnx.eval_shape(lambda: create_model(cfg.model, nnx.Rngs(0)))
  graphdef, abs_state = nnx.split(abs_model)
  logical = jax.tree.map(lambda v: tuple(v.get_metadata().get("out_sharding") or (None,) * v.ndim),
                         abs_state, is_leaf=lambda x: isinstance(x, nnx.Variable))
  return graphdef, abs_state.to_pure_dict(), _pure(logical)


def _pure(state) -> dict:
  """nnx.State (possibly holding non-array leaves) -> nested plain dict."""
  if isinstance(state, (nnx.State, dict)):
    return {k: _pure(v) for k, v in state.items()}
  return state


def build_setup(cfg: Config, mesh: Mesh, rules) -> TrainSetup:
  graphdef, abs_params, logical = abstract_model(cfg)
  param_specs = jax.tree.map(lambda ax, p: logical_to_spec(ax, rules, mesh, p.shape), logical, abs_params,
                             is_leaf=_is_axes)
  param_shardings = jax.tree.map(lambda s: NamedSharding(mesh, s), param_specs,
                                 is_leaf=lambda x: isinstance(x, PartitionSpec))
  tx = make_optimizer(cfg.optimizer, cfg.train.steps, logical, abs_params)
  abs_opt = jax.eval_shape(tx.init, abs_params)
  # Optimizer moments mirror the parameter they belong to; scalars (count) are replicated.
  opt_shardings = _opt_shardings(abs_opt, abs_params, param_shardings, mesh)
  replicated = NamedSharding(mesh, PartitionSpec())
  state_shardings = {"step": replicated, "params": param_shardings, "opt_state": opt_shardings}
  abs_state = {"step": jax.ShapeDtypeStruct((), jnp.int32), "params": abs_params, "opt_state": abs_opt}
  abs_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                           abs_state, state_shardings)
  return TrainSetup(graphdef, abs_params, logical, param_shardings, tx, state_shardings, abs_state,
                    mesh, tuple(rules), family_class(cfg.model.family))


def _opt_shardings(abs_opt, abs_params, param_shardings, mesh):
  by_shape_path = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(abs_params):
    by_shape_path[jax.tree_util.keystr(path)] = (leaf.shape, path)
  flat_param_shardings = {jax.tree_util.keystr(p): s
                          for p, s in jax.tree_util.tree_leaves_with_path(param_shardings)}
  replicated = NamedSharding(mesh, PartitionSpec())

  def pick(path, leaf):
    key = jax.tree_util.keystr(path)
    # optax nests a copy of the params tree (mu, nu) under its own keys: match the suffix.
    best = None
    for pkey, (shape, _) in by_shape_path.items():
      if key.endswith(pkey) and tuple(leaf.shape) == tuple(shape) and (best is None or len(pkey) > len(best)):
        best = pkey
    return flat_param_shardings[best] if best is not None else replicated

  return jax.tree_util.tree_map_with_path(pick, abs_opt)


def init_state(setup: TrainSetup, cfg: Config, seed: int) -> dict:
  """Initialises parameters and optimizer state directly in their shardings."""

  def init(rng):
    model = create_model(cfg.model, nnx.Rngs(params=rng))
    params = _pure(nnx.split(model)[1].to_pure_dict())
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": setup.tx.init(params)}

  with jax.set_mesh(setup.mesh):
    return jax.jit(init, out_shardings=setup.state_shardings)(jax.random.key(seed))


def state_from_params(setup: TrainSetup, params: dict) -> dict:
  """A fresh state (step 0, new optimizer state) around given params (a warm start)."""

  def init(params):
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": setup.tx.init(params)}

  with jax.set_mesh(setup.mesh):
    return jax.jit(init, in_shardings=(setup.param_shardings,), out_shardings=setup.state_shardings)(params)


def count_params(abs_params) -> int:
  return int(sum(math.prod(p.shape) for p in jax.tree.leaves(abs_params)))


def sharding_table(setup: TrainSetup) -> str:
  """One line per parameter: path, shape, logical axes, mesh spec, per-device MiB."""
  lines = [f"{'parameter':<48} {'shape':<18} {'logical axes':<32} {'mesh spec':<28} {'MiB/dev':>8}"]
  flat_axes = dict(jax.tree_util.tree_leaves_with_path(setup.logical_axes, is_leaf=_is_axes))
  flat_sh = dict(jax.tree_util.tree_leaves_with_path(setup.param_shardings))
  total_dev = 0.0
  for path, p in jax.tree_util.tree_leaves_with_path(setup.abstract_params):
    sh = flat_sh[path]
    shard_shape = sh.shard_shape(p.shape)
    mib = math.prod(shard_shape) * np.dtype(p.dtype).itemsize / 2**20
    total_dev += mib
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    axes = ",".join(str(a) for a in flat_axes[path])
    spec = str(tuple(sh.spec))
    lines.append(f"{name:<48} {str(tuple(p.shape)):<18} {axes:<32} {spec:<28} {mib:>8.3f}")
  lines.append(f"params: {count_params(setup.abstract_params):,}  per-device param MiB: {total_dev:.2f}")
  return "\n".join(lines)


def per_device_bytes(abstract_tree) -> int:
  """Bytes one device holds for a tree of sharded ShapeDtypeStructs (even sharding)."""
  total = 0
  for leaf in jax.tree.leaves(abstract_tree):
    shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
    total += math.prod(shape) * np.dtype(leaf.dtype).itemsize
  return total


def memory_report(setup: TrainSetup) -> str:
  params = per_device_bytes(setup.abstract_state["params"])
  opt = per_device_bytes(setup.abstract_state["opt_state"])
  full = sum(math.prod(p.shape) * np.dtype(p.dtype).itemsize for p in jax.tree.leaves(setup.abstract_params))
  return (f"per-device memory: params {params / 2**20:.2f} MiB + optimizer {opt / 2**20:.2f} MiB "
          f"= {(params + opt) / 2**20:.2f} MiB (unsharded params: {full / 2**20:.2f} MiB); "
          "activations come on top and depend on batch, length and remat policy")
