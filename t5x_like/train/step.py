"""The jitted train and eval steps: pure functions of (state, batch) with explicit shardings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from t5x_like.config import Config
from t5x_like.runtime import activation_sharding, logical_to_spec
from t5x_like.train.optimizer import make_schedule
from t5x_like.train.state import TrainSetup


def batch_sharding(setup: TrainSetup) -> NamedSharding:
  spec = logical_to_spec(("batch", "length"), setup.rules, setup.mesh)
  return NamedSharding(setup.mesh, spec)


def _microbatches(batch: dict, n: int) -> dict:
  """[B, L] -> [n, B/n, L] taking every n-th row, so each device's rows split evenly
  across micro-batches and the reshape moves no data between devices."""

  def split(x):
    b = x.shape[0]
    return jnp.swapaxes(x.reshape((b // n, n) + x.shape[1:]), 0, 1)

  return jax.tree.map(split, batch)


def extra_metrics(aux: dict) -> dict:
  """A model's extra metrics (`aux["extra"]`: {name: [numerator, denominator]}), divided."""
  return {name: v[0] / jnp.maximum(v[1], 1.0) for name, v in aux.get("extra", {}).items()}


def make_train_step(setup: TrainSetup, cfg: Config):
  """Returns `train_step(state, batch, rng) -> (state, metrics)`, jitted and donating state."""
  graphdef, tx = setup.graphdef, setup.tx
  schedule = make_schedule(cfg.optimizer, cfg.train.steps)
  accum = cfg.train.grad_accum_steps
  use_dropout = cfg.model.dropout_rate > 0
  b_sharding = batch_sharding(setup)
  micro_spec = PartitionSpec(None, *b_sharding.spec)

  def loss_fn(params, batch, rng):
    model = nnx.merge(graphdef, nnx.State(params))
    total, aux = model.loss(batch, rng if use_dropout else None)
    return total, aux

  grad_fn = jax.grad(loss_fn, has_aux=True)

  def step(state, batch, rng):
    with activation_sharding(setup.mesh, setup.rules):
      params = state["params"]
      rng = jax.random.fold_in(rng, state["step"])
      if accum == 1:
        grads, aux = grad_fn(params, batch, rng)
      else:
        micro = _microbatches(batch, accum)
        micro = jax.lax.with_sharding_constraint(micro, NamedSharding(setup.mesh, micro_spec))

        def body(carry, mb_and_i):
          mb, i = mb_and_i
          g, a = grad_fn(params, mb, jax.random.fold_in(rng, i))
          return jax.tree.map(jnp.add, carry, (g, a)), None

        first = jax.tree.map(lambda x: x[0], micro)
        aux_shape = jax.eval_shape(lambda p, b, r: grad_fn(p, b, r)[1], params, first, rng)
        zeros = (jax.tree.map(jnp.zeros_like, params),
                 jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), aux_shape))
        (grads, aux), _ = jax.lax.scan(body, zeros, (micro, jnp.arange(accum)))
      # Losses are sums over tokens: divide once by the batch's total weight.
      denom = jnp.maximum(aux["weight_sum"], 1.0)
      grads = jax.tree.map(lambda g: g / denom, grads)
      grad_norm = optax.tree.norm(grads)
      loss = aux["nll_sum"] / denom
      finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
      updates, new_opt = tx.update(grads, state["opt_state"], params)
      new_params = optax.apply_updates(params, updates)
      # A non-finite step leaves params and optimizer state untouched (and is counted).
      keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
      new_state = {"step": state["step"] + 1, "params": keep(new_params, params),
                   "opt_state": keep(new_opt, state["opt_state"])}
      metrics = {
          "loss": loss,
          "z_loss": aux["z_loss_sum"] / denom,
          "accuracy": aux["correct_sum"] / denom,
          "grad_norm": grad_norm,
          "learning_rate": schedule(state["step"]),
          "tokens": aux["weight_sum"],
          "skipped": 1.0 - finite.astype(jnp.float32),
          **extra_metrics(aux),
      }
    return new_state, metrics

  replicated = NamedSharding(setup.mesh, PartitionSpec())
  return jax.jit(step, in_shardings=(setup.state_shardings, b_sharding, replicated),
                 out_shardings=(setup.state_shardings, replicated), donate_argnums=(0,))


def make_eval_step(setup: TrainSetup):
  """Returns `eval_step(params, batch) -> sums` (nll, correct, weight) for averaging."""
  graphdef = setup.graphdef

  def step(params, batch):
    with activation_sharding(setup.mesh, setup.rules):
      model = nnx.merge(graphdef, nnx.State(params))
      _, aux = model.loss(batch, None)
    return aux

  replicated = NamedSharding(setup.mesh, PartitionSpec())
  return jax.jit(step, in_shardings=(setup.param_shardings, batch_sharding(setup)),
                 out_shardings=replicated)
