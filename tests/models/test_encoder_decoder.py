import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from t5x_like import config as C
from t5x_like.models import create_model


def tiny(**model):
  cfg = C.ModelConfig(family="encoder_decoder", vocab_size=64, d_model=32, num_layers=2,
                      num_decoder_layers=3, num_heads=4, d_ff=64, max_len=32)
  for k, v in model.items():
    setattr(cfg, k, v)
  return cfg


def forward(model):
  """A jitted forward; eager calls would re-trace the scanned stack on every call."""
  graphdef, state = nnx.split(model)
  fn = jax.jit(lambda s, batch: nnx.merge(graphdef, s)(batch))
  return lambda batch: fn(state, batch)


T5_V10 = dict(position="relative", attention_scale=1.0, mlp_activation="relu", tie_embeddings=True,
              rescale_decoder_output=True)
T5_V11 = dict(position="relative", attention_scale=1.0, mlp_activation="gated_gelu",
              tie_embeddings=False, rescale_decoder_output=False, head_dim=16)
MODERN = dict(position="rope", mlp_activation="swiglu", num_kv_heads=2)


def _example(rng, n_enc, n_dec):
  return rng.integers(2, 64, n_enc), rng.integers(2, 64, n_dec)


@pytest.mark.parametrize("style", [T5_V10, T5_V11, MODERN])
def test_packing_isolated_through_cross_attention(style):
  model = forward(create_model(tiny(**style), nnx.Rngs(0)))
  rng = np.random.default_rng(0)
  (ea, da), (eb, db) = _example(rng, 6, 4), _example(rng, 5, 3)
  packed = {
      "encoder_input_tokens": jnp.asarray(np.concatenate([ea, eb])[None]),
      "encoder_segment_ids": jnp.asarray([[1] * 6 + [2] * 5]),
      "encoder_positions": jnp.asarray([list(range(6)) + list(range(5))]),
      "decoder_input_tokens": jnp.asarray(np.concatenate([da, db])[None]),
      "decoder_segment_ids": jnp.asarray([[1] * 4 + [2] * 3]),
      "decoder_positions": jnp.asarray([list(range(4)) + list(range(3))]),
  }
  out = model(packed)
  alone_b = model({"encoder_input_tokens": jnp.asarray(eb[None]),
                   "decoder_input_tokens": jnp.asarray(db[None])})
  np.testing.assert_allclose(out[0, 4:], alone_b[0], rtol=1e-4, atol=1e-4)
  # Changing segment 1's encoder input moves all of segment 1's decoder outputs (bidirectional
  # encoder + cross-attention) and none of segment 2's.
  changed = dict(packed, encoder_input_tokens=packed["encoder_input_tokens"].at[0, 5].set(3))
  out2 = model(changed)
  assert not np.allclose(out2[0, 0], out[0, 0])
  np.testing.assert_allclose(out2[0, 4:], out[0, 4:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("style", [T5_V10, T5_V11])
def test_decoder_is_causal(style):
  model = forward(create_model(tiny(**style), nnx.Rngs(1)))
  batch = {"encoder_input_tokens": jnp.asarray([[5, 9, 12, 4, 7]]),
           "decoder_input_tokens": jnp.asarray([[0, 3, 8, 11, 2, 6]])}
  out = model(batch)
  changed = dict(batch, decoder_input_tokens=batch["decoder_input_tokens"].at[0, 3].set(40))
  out2 = model(changed)
  np.testing.assert_allclose(out2[0, :3], out[0, :3], rtol=1e-5, atol=1e-5)
  assert not np.allclose(out2[0, 3], out[0, 3])


def test_encoder_padding_is_ignored():
  model = forward(create_model(tiny(**T5_V11), nnx.Rngs(2)))
  dec = jnp.asarray([[0, 3, 8]])
  a = model({"encoder_input_tokens": jnp.asarray([[5, 9, 12]]), "decoder_input_tokens": dec})
  b = model({"encoder_input_tokens": jnp.asarray([[5, 9, 12, 0, 0]]), "decoder_input_tokens": dec})
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("style", [T5_V10, T5_V11])
def test_greedy_predict_matches_step_by_step_argmax(style):
  model = create_model(tiny(init_std=0.2, **style), nnx.Rngs(3))
  enc = jnp.asarray([[5, 9, 12, 4, 7], [8, 3, 22, 6, 9]])
  out = np.asarray(model.predict({"encoder_input_tokens": enc}, max_new_tokens=5, eos_id=-1))
  # Reference: a Python loop, one full forward per token, argmax at the newest position.
  # The buffer has a fixed length (one compile); the decoder is causal (tested above), so
  # the zeros after position k cannot change logit k.
  fwd, seq = forward(model), np.zeros((2, 5), np.int32)
  for k in range(5):
    dec = np.pad(seq[:, :-1], ((0, 0), (1, 0)))
    logits = fwd({"encoder_input_tokens": enc, "decoder_input_tokens": jnp.asarray(dec)})
    seq[:, k] = np.argmax(np.asarray(logits[:, k]), -1)
  np.testing.assert_array_equal(out, seq)
  assert len(set(out.ravel().tolist())) > 1  # not a degenerate constant sequence


def test_predict_stops_after_eos():
  model = create_model(tiny(init_std=0.2, **T5_V11), nnx.Rngs(3))
  enc = jnp.asarray([[5, 9, 12, 4, 7]])
  free = np.asarray(model.predict({"encoder_input_tokens": enc}, max_new_tokens=5, eos_id=-1))[0]
  eos = int(free[1])  # treat the second generated token as EOS
  out = np.asarray(model.predict({"encoder_input_tokens": enc}, max_new_tokens=5, eos_id=eos))[0]
  stop = list(free).index(eos)
  assert out[:stop + 1].tolist() == free[:stop + 1].tolist() and not out[stop + 1:].any()


@pytest.mark.parametrize("style", [T5_V10, MODERN])
def test_scan_and_unrolled_agree(style):
  scanned = forward(create_model(tiny(scan_layers=True, **style), nnx.Rngs(0)))
  unrolled = forward(create_model(tiny(scan_layers=False, remat_policy="full", **style), nnx.Rngs(0)))
  batch = {"encoder_input_tokens": jnp.arange(1, 9)[None], "decoder_input_tokens": jnp.arange(6)[None]}
  np.testing.assert_allclose(scanned(batch), unrolled(batch), rtol=1e-5, atol=1e-5)


def test_tied_head_rescales_decoder_output():
  on = forward(create_model(tiny(**T5_V10), nnx.Rngs(0)))
  off = forward(create_model(tiny(**dict(T5_V10, rescale_decoder_output=False)), nnx.Rngs(0)))
  batch = {"encoder_input_tokens": jnp.arange(1, 9)[None], "decoder_input_tokens": jnp.arange(6)[None]}
  np.testing.assert_allclose(on(batch), off(batch) * 32 ** -0.5, rtol=1e-5, atol=1e-6)


def test_loss_uses_decoder_targets():
  model = create_model(tiny(**T5_V11), nnx.Rngs(4))
  batch = {"encoder_input_tokens": jnp.asarray([[5, 9, 12]]),
           "decoder_input_tokens": jnp.asarray([[0, 3, 8]]),
           "decoder_target_tokens": jnp.asarray([[3, 8, 1]]),
           "decoder_loss_weights": jnp.asarray([[1.0, 1.0, 0.0]])}
  _, aux = model.loss(batch)
  assert float(aux["weight_sum"]) == 2.0
  assert np.isfinite(float(aux["nll_sum"]))


def _train_losses(mesh_shape, rules, batch, steps=2):
  """Losses of a few train steps of a tiny T5 v1.1 on a mesh of 1 or 8 CPU devices."""
  from t5x_like.train.setup import init_state, make_setup
  cfg = C.replace(C.Config(), model=dict(tiny(**T5_V11).__dict__, d_model=64, vocab_size=128),
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
  target = rng.integers(3, 128, (8, 16)).astype(np.int32)
  batch = {"encoder_input_tokens": tok, "encoder_segment_ids": seg, "encoder_positions": pos,
           "decoder_input_tokens": np.where(pos == 0, 0, np.roll(target, 1, 1)).astype(np.int32),
           "decoder_target_tokens": target, "decoder_segment_ids": seg, "decoder_positions": pos,
           "decoder_loss_weights": np.ones((8, 16), np.float32)}
  one = _train_losses((1, 1, 1), "fsdp", batch)
  np.testing.assert_allclose(_train_losses((2, 2, 2), "fsdp_tp", batch), one, rtol=1e-5)
  assert one[1] < one[0]
