import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from t5x_like import config as C
from t5x_like.models import create_model


def tiny(**model):
  cfg = C.ModelConfig(family="encoder", vocab_size=64, d_model=32, num_layers=2, num_heads=4, d_ff=64,
                      max_len=32)
  for k, v in model.items():
    setattr(cfg, k, v)
  return cfg


def forward(model):
  """A jitted forward; eager calls would re-trace the scanned stack on every call."""
  graphdef, state = nnx.split(model)
  fn = jax.jit(lambda s, batch: nnx.merge(graphdef, s)(batch))
  return lambda batch: fn(state, batch)


BERT = dict(position="learned", norm="layernorm", norm_position="post", norm_eps=1e-12,
            mlp_activation="gelu", gelu_approximate=False, use_bias=True, type_vocab_size=2,
            embed_norm=True, mlm_head=True)
MODERN = dict(position="rope", norm="rmsnorm", mlp_activation="swiglu", num_kv_heads=2)
RELATIVE = dict(position="relative", attention_scale=1.0)


@pytest.mark.parametrize("style", [BERT, MODERN, RELATIVE])
def test_bidirectional_and_packing_isolated(style):
  model = forward(create_model(tiny(**style), nnx.Rngs(0)))
  rng = np.random.default_rng(0)
  a, b = rng.integers(3, 64, 5), rng.integers(3, 64, 7)
  types_b = rng.integers(0, 2, 7)
  packed = {"encoder_input_tokens": jnp.asarray(np.concatenate([a, b])[None]),
            "encoder_segment_ids": jnp.asarray([[1] * 5 + [2] * 7]),
            "encoder_positions": jnp.asarray([list(range(5)) + list(range(7))]),
            "encoder_token_type_ids": jnp.asarray(np.concatenate([np.zeros(5, int), types_b])[None])}
  out = model(packed)
  alone_b = model({"encoder_input_tokens": jnp.asarray(b[None]),
                   "encoder_token_type_ids": jnp.asarray(types_b[None])})
  np.testing.assert_allclose(out[0, 5:], alone_b[0], rtol=1e-4, atol=1e-4)
  # A later token changes earlier outputs of its own segment, and nothing in the other one.
  changed = dict(packed, encoder_input_tokens=packed["encoder_input_tokens"].at[0, 4].set(7))
  out2 = model(changed)
  assert not np.allclose(out2[0, 0], out[0, 0])
  np.testing.assert_allclose(out2[0, 5:], out[0, 5:], rtol=1e-5, atol=1e-5)


def test_padding_is_ignored_without_segment_ids():
  model = forward(create_model(tiny(**BERT), nnx.Rngs(1)))
  toks = jnp.asarray([[5, 9, 12, 4]])
  padded = jnp.asarray([[5, 9, 12, 4, 0, 0, 0]])
  np.testing.assert_allclose(model({"encoder_input_tokens": padded})[0, :4],
                             model({"encoder_input_tokens": toks})[0], rtol=1e-4, atol=1e-5)


def test_token_types_change_outputs():
  model = forward(create_model(tiny(**BERT), nnx.Rngs(2)))
  toks = jnp.asarray([[5, 9, 12, 4]])
  base = model({"encoder_input_tokens": toks})
  typed = model({"encoder_input_tokens": toks, "encoder_token_type_ids": jnp.asarray([[0, 0, 1, 1]])})
  assert not np.allclose(base, typed)


@pytest.mark.parametrize("style", [BERT, MODERN])
def test_scan_and_unrolled_agree(style):
  scanned = forward(create_model(tiny(scan_layers=True, **style), nnx.Rngs(0)))
  unrolled = forward(create_model(tiny(scan_layers=False, remat_policy="full", **style), nnx.Rngs(0)))
  batch = {"encoder_input_tokens": (jnp.arange(10)[None] % 63) + 1}
  np.testing.assert_allclose(scanned(batch), unrolled(batch), rtol=1e-5, atol=1e-5)


def test_mlm_head_matches_numpy():
  """The head is dense -> exact gelu -> LayerNorm -> tied projection + bias (Devlin et al. 2019)."""
  model = create_model(tiny(**BERT), nnx.Rngs(3))
  batch = {"encoder_input_tokens": jnp.asarray([[5, 9, 12, 4]])}
  x = np.asarray(model.encode(batch), np.float64)
  h = x @ np.asarray(model.mlm_dense[...]) + np.asarray(model.mlm_dense_bias[...])
  from math import erf
  h = h * 0.5 * (1 + np.vectorize(erf)(h / np.sqrt(2)))
  mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
  h = (h - mu) / np.sqrt(var + 1e-12) * np.asarray(model.mlm_norm.scale[...]) + np.asarray(
      model.mlm_norm.bias[...])
  want = h @ np.asarray(model.embed.embedding[...]).T + np.asarray(model.output_bias[...])
  np.testing.assert_allclose(model(batch), want, rtol=1e-4, atol=1e-5)


def test_loss_counts_only_masked_positions_and_predict_is_argmax():
  model = create_model(tiny(**BERT), nnx.Rngs(4))
  batch = {"encoder_input_tokens": jnp.asarray([[5, 3, 12, 3]]),
           "encoder_target_tokens": jnp.asarray([[5, 9, 12, 4]]),
           "encoder_loss_weights": jnp.asarray([[0.0, 1.0, 0.0, 1.0]])}
  total, aux = model.loss(batch)
  assert float(aux["weight_sum"]) == 2.0
  other = dict(batch, encoder_target_tokens=jnp.asarray([[7, 9, 8, 4]]))  # unweighted targets
  assert float(model.loss(other)[0]) == pytest.approx(float(total), rel=1e-6)
  logp = jax.nn.log_softmax(model(batch), -1)
  assert float(model.score(batch)[0]) == pytest.approx(float(logp[0, 1, 9] + logp[0, 3, 4]), rel=1e-5)
  np.testing.assert_array_equal(model.predict(batch), np.argmax(model(batch), -1))


def _train_losses(mesh_shape, rules, batch, steps=2):
  """Losses of a few train steps of a tiny BERT on a mesh of 1 or 8 CPU devices."""
  from t5x_like.train.setup import init_state, make_setup
  cfg = C.replace(C.Config(), model=dict(tiny(**BERT).__dict__, d_model=64, vocab_size=128),
                  data=dict(seq_len=16), train=dict(batch_size=8, steps=10),
                  optimizer=dict(warmup_steps=0, learning_rate=1e-2),
                  mesh=dict(data=mesh_shape[0], fsdp=mesh_shape[1], tensor=mesh_shape[2], rules=rules))
  setup = make_setup(cfg, jax.devices()[:int(np.prod(mesh_shape))])
  state, step = init_state(setup, cfg, 0), setup.train_step
  losses = []
  for _ in range(steps):
    state, m = step(state, {k: jax.device_put(v, setup.batch_sharding) for k, v in batch.items()},
                    jax.random.key(0))
    losses.append(float(m["loss"]))
  return np.array(losses)


def test_train_step_on_a_sharded_mesh_matches_one_device():
  rng = np.random.default_rng(0)
  tok = rng.integers(3, 128, (8, 16)).astype(np.int32)
  seg = np.repeat(np.where(np.arange(16) < 10, 1, 2)[None], 8, 0).astype(np.int32)
  pos = np.repeat(np.where(np.arange(16) < 10, np.arange(16), np.arange(16) - 10)[None], 8, 0).astype(np.int32)
  masked = (rng.random((8, 16)) < 0.3).astype(np.float32)
  batch = {"encoder_input_tokens": np.where(masked > 0, 4, tok).astype(np.int32),
           "encoder_target_tokens": tok, "encoder_segment_ids": seg, "encoder_positions": pos,
           "encoder_loss_weights": masked, "encoder_token_type_ids": (pos > 4).astype(np.int32)}
  one = _train_losses((1, 1, 1), "fsdp", batch)
  np.testing.assert_allclose(_train_losses((2, 2, 2), "fsdp_tp", batch), one, rtol=1e-5)
  assert one[1] < one[0]
