"""The task heads' losses and pooling against numpy implementations of their definitions."""

import jax
import jax.numpy as jnp
import numpy as np

from t5x_like.models import heads


def test_pool_mean_and_first_per_segment():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 3)).astype(np.float32)
  seg = np.array([[1, 1, 2, 2, 0], [1, 2, 2, 2, 2]])
  mean2 = np.asarray(heads.pool(jnp.asarray(x), jnp.asarray(seg), 2, "mean"))
  np.testing.assert_allclose(mean2[0], x[0, 2:4].mean(0), rtol=1e-6)
  np.testing.assert_allclose(mean2[1], x[1, 1:].mean(0), rtol=1e-6)
  first2 = np.asarray(heads.pool(jnp.asarray(x), jnp.asarray(seg), 2, "first"))
  np.testing.assert_allclose(first2, np.stack([x[0, 2], x[1, 1]]))


def _log_softmax(z, axis=-1):
  z = z - z.max(axis=axis, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def test_classification_loss_is_summed_cross_entropy_over_valid_rows():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(4, 3)).astype(np.float32)
  labels = np.array([0, 2, 1, 1])
  valid = np.array([1.0, 1.0, 0.0, 1.0], np.float32)
  out = heads.classification_loss(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(valid))
  nll = -_log_softmax(logits)[np.arange(4), labels]
  assert np.isclose(float(out["nll_sum"]), (nll * valid).sum(), rtol=1e-5)
  assert float(out["weight_sum"]) == 3.0
  assert float(out["correct_sum"]) == ((logits.argmax(-1) == labels) * valid).sum()


def test_info_nce_matches_the_formula_and_ignores_padding_rows():
  rng = np.random.default_rng(2)
  a, p = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
  valid = np.array([1, 1, 1, 1, 0], np.float32)
  t = 0.1
  out = heads.info_nce(jnp.asarray(a, jnp.float32), jnp.asarray(p, jnp.float32), jnp.asarray(valid), t)
  an = a / np.linalg.norm(a, axis=1, keepdims=True)
  pn = p / np.linalg.norm(p, axis=1, keepdims=True)
  sim = an[:4] @ pn[:4].T / t  # row 4 is padding: neither an anchor nor a negative
  want = -np.diag(_log_softmax(sim)).sum()
  assert np.isclose(float(out["nll_sum"]), want, rtol=1e-5)
  assert float(out["weight_sum"]) == 4.0
  assert float(out["correct_sum"]) == (sim.argmax(1) == np.arange(4)).sum()


def _fit(head, batch, steps=60, **model):
  import optax
  from flax import nnx

  from t5x_like.config import ModelConfig
  from t5x_like.models import create_model

  cfg = ModelConfig(family="encoder", vocab_size=32, d_model=32, num_layers=1, num_heads=2, d_ff=64, head=head,
                    num_labels=3, **model)
  m = create_model(cfg, nnx.Rngs(0))
  graphdef, params = nnx.split(m)
  params = params.to_pure_dict()
  tx = optax.adam(3e-3)
  opt = tx.init(params)

  def loss(p, rng):
    total, aux = nnx.merge(graphdef, nnx.State(p)).loss(batch, rng)
    return total / aux["weight_sum"], aux

  @jax.jit
  def step(p, o, rng):
    (value, aux), g = jax.value_and_grad(loss, has_aux=True)(p, rng)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o, value, aux["correct_sum"] / aux["weight_sum"]

  first = None
  for i in range(steps):
    params, opt, value, acc = step(params, opt, jax.random.key(i))
    first = float(value) if first is None else first
  return first, float(value), float(acc)


def test_each_head_learns_a_task_its_inputs_determine():
  from t5x_like import features as F

  rng = np.random.default_rng(0)
  tokens = rng.integers(3, 32, (16, 8)).astype(np.int32)
  seg = np.ones_like(tokens)
  base = {F.ENCODER_INPUT_TOKENS: tokens, F.ENCODER_TARGET_TOKENS: tokens, F.ENCODER_SEGMENT_IDS: seg,
          F.ENCODER_POSITIONS: np.tile(np.arange(8, dtype=np.int32), (16, 1)),
          F.ENCODER_LOSS_WEIGHTS: np.ones((16, 8), np.float32)}
  # classify: the class is the first token mod 3; tag: each token mod 3; embed: two views.
  cls = dict(base, **{F.ENCODER_CLASS_LABELS: (tokens[:, :1] % 3).astype(np.int32)})
  first, last, acc = _fit("classify", cls, pooling="first")
  assert last < 0.5 * first and acc == 1.0
  tag = dict(base, **{F.ENCODER_TARGET_TOKENS: (tokens % 3).astype(np.int32)})
  first, last, acc = _fit("tag", tag)
  assert last < 0.5 * first and acc == 1.0
  pairs = dict(base, **{F.ENCODER_SEGMENT_IDS: np.repeat([[1, 2]], 4, axis=1).repeat(16, 0).astype(np.int32),
                        F.ENCODER_INPUT_TOKENS: np.concatenate([tokens[:, :4], tokens[:, :4]], axis=1)})
  first, last, acc = _fit("embed", pairs, dropout_rate=0.1, contrastive_temperature=0.1)
  assert last < 0.5 * first and acc > 0.9
