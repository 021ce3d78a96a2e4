"""model.loss_chunk: the chunked head + cross-entropy gives the unchunked loss, counters and
gradients, and keeps the full logits out of the compiled step's memory."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from t5x_like import config as C
from t5x_like.models import create_model, family_class
from t5x_like.train.setup import init_state, make_setup

V = 61
BERT = dict(family="encoder", position="learned", norm="layernorm", norm_position="post",
            mlp_activation="gelu", gelu_approximate=False, use_bias=True, type_vocab_size=2,
            embed_norm=True, mlm_head=True, mlm_scored_chunk=0)  # the head on every position, here
CASES = {
    "decoder_tied_zloss": dict(family="decoder", z_loss=1e-2),
    "decoder_untied": dict(family="decoder", tie_embeddings=False, position="learned", use_bias=True),
    "bert_mlm_head_bias": BERT,
    "bert_untied_zloss": dict(BERT, tie_embeddings=False, z_loss=1e-3),
    "t5_v1_0_tied": dict(family="encoder_decoder", position="relative", mlp_activation="relu",
                         rescale_decoder_output=True),
    "t5_v1_1_untied_zloss": dict(family="encoder_decoder", position="relative",
                                 mlp_activation="gated_gelu", tie_embeddings=False,
                                 rescale_decoder_output=False, z_loss=1e-4),
}


def tiny(**model) -> C.ModelConfig:
  return C.ModelConfig(**{**dict(vocab_size=V, d_model=32, num_layers=2, num_heads=4, d_ff=64,
                                 max_len=32), **model})


def batch_for(cfg: C.ModelConfig, length: int, batch: int = 3) -> dict:
  contract = family_class(cfg.family).contract
  out = contract.fake_batch(batch, length, length - 2 if cfg.family == "encoder_decoder" else 0,
                            vocab_size=V, seed=1)
  # Uneven weights, with zeros, so the sums are weighted sums.
  side = contract.target_side
  w = np.random.default_rng(2).integers(0, 3, out[side.loss_weights].shape).astype(np.float32)
  out[side.loss_weights] = w
  return {k: jnp.asarray(v) for k, v in out.items()}


def loss_and_grads(cfg: C.ModelConfig, batch: dict):
  graphdef, params = nnx.split(create_model(cfg, nnx.Rngs(0)))

  def fn(p):
    return nnx.merge(graphdef, p).loss(batch)

  (total, aux), grads = jax.jit(jax.value_and_grad(fn, has_aux=True))(params)
  return total, aux, grads


# One case per family in the fast suite (each covers z_loss or a head bias); the other
# head variants run with the slow tests.
FAST = ("decoder_tied_zloss", "bert_mlm_head_bias", "t5_v1_1_untied_zloss")


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in CASES])
def test_chunked_equals_whole(name):
  cfg = tiny(**CASES[name])
  batch = batch_for(cfg, length=13)  # 13 = 3 chunks of 5 with 2 padded positions
  total, aux, grads = loss_and_grads(cfg, batch)
  c_total, c_aux, c_grads = loss_and_grads(dataclasses.replace(cfg, loss_chunk=5), batch)
  np.testing.assert_allclose(c_total, total, rtol=1e-5)
  assert set(c_aux) == set(aux)
  for k in aux:
    np.testing.assert_allclose(c_aux[k], aux[k], rtol=1e-5, err_msg=k)
  if cfg.z_loss:
    assert aux["z_loss_sum"] > 0
  flat, c_flat = jax.tree.leaves_with_path(grads), jax.tree.leaves(c_grads)
  for (path, g), cg in zip(flat, c_flat, strict=True):
    g, cg = np.asarray(g), np.asarray(cg)
    np.testing.assert_allclose(cg, g, rtol=1e-5, atol=1e-6 * np.abs(g).max(),
                               err_msg=jax.tree_util.keystr(path))
  assert any(np.abs(np.asarray(g)).max() > 0 for g in c_flat)


def test_chunk_longer_than_the_rows():
  cfg = tiny(family="decoder")
  batch = batch_for(cfg, length=7)
  total, *_ = loss_and_grads(cfg, batch)
  np.testing.assert_allclose(loss_and_grads(dataclasses.replace(cfg, loss_chunk=64), batch)[0],
                             total, rtol=1e-5)


def train_losses(loss_chunk: int, mesh: tuple[int, int, int], rules: str, steps: int = 3) -> np.ndarray:
  # 64 so the vocabulary divides over tensor x fsdp (61 would stay replicated).
  cfg = C.replace(C.Config(), model=dict(vocab_size=64, d_model=32, num_layers=1, num_heads=4, d_ff=64,
                                         tie_embeddings=False, z_loss=1e-3, loss_chunk=loss_chunk),
                  data=dict(seq_len=13), train=dict(batch_size=8, steps=10),
                  optimizer=dict(warmup_steps=0, learning_rate=1e-2),
                  mesh=dict(data=mesh[0], fsdp=mesh[1], tensor=mesh[2], rules=rules))
  setup = make_setup(cfg, jax.devices()[:int(np.prod(mesh))])
  state = init_state(setup, cfg, 0)
  data = family_class("decoder").contract.fake_batch(8, 13, vocab_size=64, seed=3)
  batch = {k: jax.device_put(v, setup.batch_sharding) for k, v in data.items()}
  out = []
  for _ in range(steps):
    state, m = setup.train_step(state, batch, jax.random.key(0))
    out.append(float(m["loss"]))
  return np.array(out)


@pytest.mark.slow  # 24 s; the unsharded equality tests stay fast
def test_chunked_train_steps_on_a_mesh_match_one_device():
  # Chunks keep the batch axis whole, so they stay sharded over data and fsdp; the head's
  # vocabulary is split over tensor and fsdp under fsdp_tp.
  ref = train_losses(0, (1, 1, 1), "fsdp")
  np.testing.assert_allclose(train_losses(5, (2, 2, 2), "fsdp_tp"), ref, rtol=1e-5)


def compiled_temp_bytes(loss_chunk: int, vocab: int = 32768, batch: int = 8, length: int = 256) -> int:
  """Scratch memory XLA plans for loss + gradients of a tiny-width, large-vocabulary decoder."""
  cfg = C.ModelConfig(family="decoder", vocab_size=vocab, d_model=32, num_layers=1, num_heads=2,
                      d_ff=64, loss_chunk=loss_chunk)
  model = nnx.eval_shape(lambda: create_model(cfg, nnx.Rngs(0)))
  graphdef, params = nnx.split(model)
  data = family_class("decoder").contract.fake_batch(batch, length, vocab_size=vocab)

  def fn(p, b):
    return nnx.merge(graphdef, p).loss(b)

  grad = jax.jit(jax.grad(fn, has_aux=True))
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), data)
  return grad.lower(params, abstract).compile().memory_analysis().temp_size_in_bytes


def test_chunking_keeps_logits_out_of_memory():
  # Measured on CPU: 556 MB whole (the fp32 logits, 8 x 256 x 32768 x 4 bytes = 268 MB,
  # and their gradient) against 158 MB in chunks of 64 positions (3.5x less).
  whole, chunked = compiled_temp_bytes(0), compiled_temp_bytes(64)
  assert whole > 8 * 256 * 32768 * 4
  assert chunked < whole / 2.5, (whole, chunked)


def test_negative_chunk_is_a_config_error():
  with pytest.raises(C.ConfigError, match="'model.loss_chunk' must be >= 0"):
    C.validate(C.Config(model=tiny(loss_chunk=-1)))
