"""The learning-rate schedule against its formula (numpy), and which parameters decay."""

import math

import jax
import numpy as np
import pytest

from t5x_like import config as C
from t5x_like.train.optimizer import decay_mask, make_schedule
from t5x_like.train.state import abstract_model


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_schedule_follows_the_formula_and_the_first_step_trains(schedule):
  peak, end_frac, warmup, total = 3e-3, 0.1, 10, 50
  cfg = C.OptimizerConfig(learning_rate=peak, end_lr_fraction=end_frac, warmup_steps=warmup, schedule=schedule)
  lr = make_schedule(cfg, total)

  def reference(k):  # the rate of step k (from 0): point k + 1 of warmup-then-decay
    t = k + 1
    if t <= warmup:
      return peak * t / warmup
    frac = (t - warmup) / (total - warmup)
    if schedule == "cosine":
      return peak * (end_frac + (1 - end_frac) * 0.5 * (1 + math.cos(math.pi * frac)))
    if schedule == "linear":
      return peak * (1 - (1 - end_frac) * frac)
    return peak

  got = np.array([float(lr(k)) for k in range(total)])
  np.testing.assert_allclose(got, [reference(k) for k in range(total)], rtol=1e-5)
  assert got[0] == pytest.approx(peak / warmup) and got[warmup - 1] == pytest.approx(peak)
  if schedule != "constant":
    assert got[-1] == pytest.approx(peak * end_frac)


def test_rsqrt_is_t5s_inverse_square_root():
  lr = make_schedule(C.OptimizerConfig(learning_rate=0.01, warmup_steps=10_000, schedule="rsqrt"), 524_288)
  for step in (0, 5_000, 9_998, 9_999, 20_000, 524_287):
    n = step + 1  # the update of step k uses point k + 1
    assert float(lr(step)) == pytest.approx(1 / math.sqrt(max(n, 10_000)), rel=1e-6)


def test_weight_decay_reaches_weights_not_biases_norms_or_tables():
  model = C.ModelConfig(family="encoder_decoder", vocab_size=64, d_model=16, num_layers=1, num_heads=2, d_ff=32,
                        use_bias=True, position="relative", norm="layernorm")
  _, _, axes = abstract_model(C.Config(model=model))
  mask = decay_mask(axes)
  flat = {"/".join(str(getattr(k, "key", k)) for k in path): v
          for path, v in jax.tree_util.tree_leaves_with_path(mask)}
  for name, decayed in flat.items():
    leaf = name.rsplit("/", 1)[-1]
    if leaf in ("wq", "wk", "wv", "wo", "wi", "wg", "embedding") or name == "head":
      assert decayed, name
    else:  # biases (bq, bk, bv: axes (heads, kv)), norms, the relative-bias table
      assert not decayed, name
  assert any(n.endswith("self_attn/bq") for n in flat) and any(n.endswith("rel_bias/table") for n in flat)
