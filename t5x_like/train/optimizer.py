"""AdamW with warmup and decay, global-norm clipping, a weight-decay mask, and the
fine-tuning controls: a smaller learning rate for the pretrained body, frozen embeddings or
bottom layers, and gradual unfreezing."""

from __future__ import annotations

from typing import NamedTuple

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


# Top-level parameter names by role: a head trains from the first step; embeddings are the
# bottom of the body. Everything else with a `layers` axis is a stack's layers. The untied
# output projection (`head`) is the output embedding: pretrained like the input one, and
# frozen with it (as a tied one is), so an LM fine-tune can keep the words it never targets.
HEADS = ("task_head", "nsp_head", "output_bias", "mlm_dense", "mlm_dense_bias", "mlm_norm")
EMBEDDINGS = ("embed", "head", "type_embed", "pos_embed", "encoder_pos_embed", "decoder_pos_embed", "embed_norm")


def finetuning(cfg: OptimizerConfig) -> bool:
  return (cfg.body_lr_scale != 1.0 or cfg.freeze_embeddings or cfg.freeze_layers > 0
          or cfg.unfreeze_every > 0)


def _role(path) -> str:
  top = str(getattr(path[0], "key", path[0]))
  return "head" if top in HEADS else "embedding" if top in EMBEDDINGS else "body"


def update_scales(cfg: OptimizerConfig, logical_axes, abstract_params, step) -> dict:
  """The factor each parameter's update is multiplied by at optimizer step `step`: 0 where
  frozen, `body_lr_scale` on the trainable body, 1 on the heads. A stacked layer parameter
  gets one factor per layer `[L, 1, ...]`. Gradual unfreezing (ULMFiT, Howard & Ruder 2018):
  at stage s // unfreeze_every the top `stage` layers of each stack train (with the body's
  other parameters, such as final norms, from the first of them on), and the embeddings
  one stage after the last layer. A model with no head of its own (an LM fine-tune of a
  decoder or an encoder-decoder, whose output layer is the tied or untied embedding)
  starts one stage on, with its top layer training: from stage 0 nothing would."""
  has_head = any(_role(path) == "head" for path, _ in jax.tree_util.tree_leaves_with_path(abstract_params))
  stage = step // cfg.unfreeze_every + (0 if has_head else 1) if cfg.unfreeze_every else 0

  def scale(path, axes, p):
    role = _role(path)
    if role == "head":
      return jnp.ones((), jnp.float32)
    on = jnp.asarray(cfg.body_lr_scale, jnp.float32)
    if "layers" not in axes:
      if role == "embedding":
        if cfg.freeze_embeddings:
          return jnp.zeros((), jnp.float32)
        if cfg.unfreeze_every:
          return jnp.where(stage > _num_layers(logical_axes, abstract_params), on, 0.0)
        return on
      return jnp.where(stage >= 1, on, 0.0) if cfg.unfreeze_every else on
    axis = axes.index("layers")
    n = p.shape[axis]
    index = jnp.arange(n)
    trainable = index >= cfg.freeze_layers
    if cfg.unfreeze_every:
      trainable &= index >= n - stage
    shape = [1] * len(p.shape)
    shape[axis] = n
    return jnp.where(trainable, on, 0.0).reshape(shape)

  return jax.tree_util.tree_map_with_path(scale, logical_axes, abstract_params,
                                          is_leaf=lambda x: isinstance(x, tuple))


def _num_layers(logical_axes, abstract_params) -> int:
  sizes = [p.shape[axes.index("layers")] for axes, p in zip(
      jax.tree.leaves(logical_axes, is_leaf=lambda x: isinstance(x, tuple)), jax.tree.leaves(abstract_params),
      strict=True) if "layers" in axes]
  return max(sizes, default=0)


class ScaleState(NamedTuple):
  count: jax.Array


def scale_updates(scales_at) -> optax.GradientTransformation:
  """Multiplies updates by `scales_at(step)` (a tree like the params), counting its own steps."""

  def init(params):
    del params
    return ScaleState(jnp.zeros((), jnp.int32))

  def update(updates, state, params=None):
    del params
    scales = scales_at(state.count)
    return jax.tree.map(lambda u, s: u * s.astype(u.dtype), updates, scales), ScaleState(state.count + 1)

  return optax.GradientTransformation(init, update)


def make_optimizer(cfg: OptimizerConfig, total_steps: int, logical_axes,
                   abstract_params=None) -> optax.GradientTransformation:
  parts = []
  scales_at = None
  if finetuning(cfg):
    if abstract_params is None:
      raise ValueError("the fine-tuning controls need the parameter shapes (abstract_params)")
    scales_at = lambda step: update_scales(cfg, logical_axes, abstract_params, step)
    # Frozen gradients go first, so they neither count in the clipping norm nor fill Adam's
    # moments; the updates are scaled again after AdamW, whose weight decay would move them.
    parts.append(scale_updates(lambda step: jax.tree.map(lambda s: (s > 0).astype(jnp.float32), scales_at(step))))
  if cfg.clip_norm > 0:
    parts.append(optax.clip_by_global_norm(cfg.clip_norm))
  parts.append(optax.adamw(make_schedule(cfg, total_steps), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                           weight_decay=cfg.weight_decay, mask=decay_mask(logical_axes)))
  if scales_at is not None:
    parts.append(scale_updates(scales_at))
  return optax.chain(*parts)
