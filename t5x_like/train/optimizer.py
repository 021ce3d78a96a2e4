"""AdamW with warmup and decay, global-norm clipping, and a weight-decay mask."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from t5x_like.config import OptimizerConfig


def make_schedule(cfg: OptimizerConfig, total_steps: int) -> optax.Schedule:
  """Linear warmup to the peak, then cosine/linear decay to `end_lr_fraction` of it. The
  update of step k (counted from 0) uses the rate of point k + 1 of the curve, so the first
  step trains (at peak / warmup_steps, not 0), step `warmup_steps` reaches the peak and the
  last step ends the decay."""
  curve = _curve(cfg, total_steps)
  return lambda count: curve(count + 1)


def _curve(cfg: OptimizerConfig, total_steps: int) -> optax.Schedule:
  peak, end = cfg.learning_rate, cfg.learning_rate * cfg.end_lr_fraction
  if cfg.schedule == "rsqrt":
    # Raffel et al. 2020 (T5), 3.1.2: 1/sqrt(max(n, k)) with k = 10^4 is peak 0.01 held for k
    # steps, then decaying as 1/sqrt(n); here peak and k are learning_rate and warmup_steps.
    k = max(cfg.warmup_steps, 1)
    return lambda n: peak * jnp.sqrt(k / jnp.maximum(n, k))
  warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
  decay_steps = max(total_steps - warmup, 1)
  if cfg.schedule == "cosine":
    decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=cfg.end_lr_fraction)
  elif cfg.schedule == "linear":
    decay = optax.linear_schedule(peak, end, decay_steps)
  else:
    decay = optax.constant_schedule(peak)
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def decay_mask(logical_axes):
  """Decay the weights that read or write the residual stream (an `embed` axis and at least
  one other, layers aside): embeddings, projections, MLP and head matrices. Norms, biases
  (attention's `(heads, kv)` ones included), scalars and the relative-position bias table
  are not decayed."""
  def decayed(axes):
    axes = [a for a in axes if a != "layers"]
    return len(axes) >= 2 and "embed" in axes
  return jax.tree.map(decayed, logical_axes, is_leaf=lambda x: isinstance(x, tuple))


def make_optimizer(cfg: OptimizerConfig, total_steps: int, logical_axes) -> optax.GradientTransformation:
  parts = []
  if cfg.clip_norm > 0:
    parts.append(optax.clip_by_global_norm(cfg.clip_norm))
  parts.append(optax.adamw(make_schedule(cfg, total_steps), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                           weight_decay=cfg.weight_decay, mask=decay_mask(logical_axes)))
  return optax.chain(*parts)
