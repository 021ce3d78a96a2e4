"""Freezing, the body's learning-rate scale and gradual unfreezing (train/optimizer.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from t5x_like import config as C
from t5x_like.train.optimizer import make_optimizer, update_scales
from t5x_like.train.state import abstract_model


def _encoder(head="classify", layers=4):
  cfg = C.Config()
  cfg.model.family, cfg.model.num_layers, cfg.model.d_model, cfg.model.d_ff = "encoder", layers, 32, 64
  cfg.model.head, cfg.model.num_labels, cfg.model.type_vocab_size, cfg.model.vocab_size = head, 3, 2, 64
  return cfg


def _scales(cfg, step):
  _, params, axes = abstract_model(cfg)
  return jax.tree.map(np.asarray, update_scales(cfg.optimizer, axes, params, step)), params


def test_freeze_layers_and_embeddings_and_scale_the_body():
  cfg = _encoder()
  cfg.optimizer.freeze_layers, cfg.optimizer.freeze_embeddings, cfg.optimizer.body_lr_scale = 2, True, 0.1
  s, _ = _scales(cfg, 0)
  wq = s["stack"]["blocks"]["self_attn"]["wq"]
  assert wq.reshape(-1).tolist() == [0.0, 0.0, np.float32(0.1), np.float32(0.1)]  # one factor per layer
  assert float(s["embed"]["embedding"]) == 0.0 and float(s["type_embed"]["embedding"]) == 0.0
  assert float(s["task_head"]["kernel"]) == 1.0  # the new head at the full rate
  assert np.isclose(float(s["final_norm"]["scale"]), 0.1)


def test_an_untied_output_projection_is_frozen_and_scaled_with_the_embeddings():
  """The untied `head` of an LM is pretrained: it takes the body's rate and freezes with
  the embeddings, as a tied one does."""
  cfg = C.Config()
  cfg.model.family, cfg.model.num_layers, cfg.model.d_model, cfg.model.d_ff = "encoder_decoder", 1, 32, 64
  cfg.model.vocab_size, cfg.model.tie_embeddings, cfg.optimizer.body_lr_scale = 64, False, 0.1
  s, params = _scales(cfg, 0)
  assert "head" in params and np.isclose(float(s["head"]), 0.1)
  cfg.optimizer.freeze_embeddings = True
  s, _ = _scales(cfg, 0)
  assert float(s["head"]) == 0.0 and float(s["embed"]["embedding"]) == 0.0


def test_gradual_unfreezing_goes_top_down_then_embeddings():
  cfg = _encoder(layers=3)
  cfg.optimizer.unfreeze_every = 10
  seen = {}
  for step in (0, 9, 10, 25, 30, 40):
    s, _ = _scales(cfg, step)
    seen[step] = (s["stack"]["blocks"]["mlp"]["wi"].reshape(-1).tolist(), float(s["embed"]["embedding"]),
                  float(s["final_norm"]["scale"]), float(s["task_head"]["bias"]))
  assert seen[0] == ([0, 0, 0], 0.0, 0.0, 1.0)  # only the head
  assert seen[9] == seen[0]
  assert seen[10] == ([0, 0, 1], 0.0, 1.0, 1.0)  # the top layer and the final norm
  assert seen[25] == ([0, 1, 1], 0.0, 1.0, 1.0)
  assert seen[30] == ([1, 1, 1], 0.0, 1.0, 1.0)
  assert seen[40] == ([1, 1, 1], 1.0, 1.0, 1.0)  # embeddings last


def test_frozen_parameters_do_not_move_and_the_body_moves_less():
  cfg = _encoder(layers=2)
  cfg.optimizer.freeze_layers, cfg.optimizer.body_lr_scale, cfg.optimizer.warmup_steps = 1, 0.25, 0
  cfg.optimizer.weight_decay = 0.1  # AdamW's decay must not move frozen weights either
  _, params, axes = abstract_model(cfg)
  params = jax.tree.map(lambda p: jnp.ones(p.shape, p.dtype), params)
  grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.5, p.dtype), params)
  tx = make_optimizer(cfg.optimizer, 10, axes, params)
  state = tx.init(params)
  updates, _ = tx.update(grads, state, params)
  new = optax.apply_updates(params, updates)
  wi_old, wi_new = params["stack"]["blocks"]["mlp"]["wi"], new["stack"]["blocks"]["mlp"]["wi"]
  np.testing.assert_array_equal(wi_new[0], wi_old[0])  # layer 0 frozen
  body_step = float(jnp.abs(wi_new[1] - wi_old[1]).max())
  head_step = float(jnp.abs(new["task_head"]["pooler"] - params["task_head"]["pooler"]).max())
  assert body_step > 0 and np.isclose(body_step / head_step, 0.25, rtol=1e-4)


def test_gradual_unfreezing_of_an_lm_without_a_head_trains_from_the_first_step():
  """A decoder fine-tuned as an LM has no head: its top layer and final norm train from step
  0 (they used to wait K steps, during which no parameter moved), embeddings at N K."""
  for tie in (True, False):
    cfg = C.Config()
    cfg.model.family, cfg.model.num_layers, cfg.model.d_model, cfg.model.d_ff = "decoder", 3, 32, 64
    cfg.model.vocab_size, cfg.model.tie_embeddings, cfg.optimizer.unfreeze_every = 64, tie, 10
    seen = {}
    for step in (0, 9, 10, 20, 29, 30):
      s, params = _scales(cfg, step)
      out = s["embed"]["embedding"] if tie else s["head"]
      seen[step] = (s["stack"]["blocks"]["mlp"]["wi"].reshape(-1).tolist(), float(out), float(s["final_norm"]["scale"]))
    assert seen[0] == seen[9] == ([0, 0, 1], 0.0, 1.0)
    assert seen[10] == ([0, 1, 1], 0.0, 1.0) and seen[20] == seen[29] == ([1, 1, 1], 0.0, 1.0)
    assert seen[30] == ([1, 1, 1], 1.0, 1.0)
