"""Attention in query blocks (`chunked_attention`), the default on CPU, against numpy and
against `jax.nn.dot_product_attention`'s gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t5x_like.layers.attention import attention_for, attention_mask, chunked_attention, query_block


def _numpy_attention(q, k, v, mask, bias, scale):
  rep = q.shape[2] // k.shape[2]
  k, v = np.repeat(k, rep, axis=2), np.repeat(v, rep, axis=2)
  logits = np.einsum("btnh,bsnh->bnts", q.astype(np.float64), k) * scale
  if bias is not None:
    logits = logits + bias
  if mask is not None:
    logits = np.where(mask, logits, -1e30)
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  return np.einsum("bnts,bsnh->btnh", p, v)


def _qkv(b, t, s, n, kv, h, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(b, t, n, h)).astype(np.float32),
          rng.normal(size=(b, s, kv, h)).astype(np.float32),
          rng.normal(size=(b, s, kv, h)).astype(np.float32))


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_causal_packed_blocks_match_numpy(kv_heads):
  # 37 positions in blocks of 8: the last block is short; documents cross block borders.
  q, k, v = _qkv(2, 37, 37, 4, kv_heads, 8)
  seg = np.zeros((2, 37), np.int32)
  seg[0, :11], seg[0, 11:30], seg[1] = 1, 2, 1  # row 0 ends in padding
  mask = np.asarray(attention_mask(jnp.asarray(seg), jnp.asarray(seg), causal=True))
  got = chunked_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), mask=jnp.asarray(mask),
                          scale=0.3, is_causal=True, block=8)
  np.testing.assert_allclose(got, _numpy_attention(q, k, v, mask, None, 0.3), rtol=1e-4, atol=1e-5)


def test_causal_without_a_mask_hides_later_keys():
  q, k, v = _qkv(1, 20, 20, 2, 2, 4, seed=1)
  causal = np.tril(np.ones((20, 20), bool))[None, None]
  got = chunked_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), scale=0.5, is_causal=True, block=6)
  np.testing.assert_allclose(got, _numpy_attention(q, k, v, causal, None, 0.5), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("block", [3, None])
def test_causal_with_a_mask_that_is_not_causal_keeps_later_keys_hidden(block):
  """As in jax.nn.dot_product_attention, is_causal hides later keys whatever the mask says:
  a same-segment mask alone (not causal) once let a block's queries see the later keys of
  their own block (a random check of shapes found it; the models always pass causal masks)."""
  q, k, v = _qkv(2, 10, 10, 4, 2, 8, seed=4)
  seg = np.array([[1] * 6 + [2] * 4, [1] * 10])
  same = (seg[:, None, :, None] == seg[:, None, None, :])
  got = chunked_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), mask=jnp.asarray(same), scale=0.4,
                          is_causal=True, block=block)
  want = _numpy_attention(q, k, v, same & np.tril(np.ones((10, 10), bool)), None, 0.4)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_cross_attention_with_bias_and_padding_matches_numpy(kv_heads):
  # 21 queries over 13 keys (cross-attention shape), a per-head bias as T5's, padded keys.
  q, k, v = _qkv(2, 21, 13, 4, kv_heads, 8, seed=2)
  bias = np.random.default_rng(3).normal(size=(1, 4, 21, 13)).astype(np.float32)
  mask = np.ones((2, 1, 21, 13), bool)
  mask[1, :, :, 9:] = False
  got = chunked_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), bias=jnp.asarray(bias),
                          mask=jnp.asarray(mask), scale=1.0, block=8)
  np.testing.assert_allclose(got, _numpy_attention(q, k, v, mask, bias, 1.0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("is_causal,kv_heads", [(True, 4), (True, 2), (False, 4)])
def test_gradients_match_dot_product_attention(is_causal, kv_heads):
  q, k, v = (jnp.asarray(a) for a in _qkv(2, 24, 24, 4, kv_heads, 8, seed=4))
  seg = jnp.asarray(np.repeat([[1] * 10 + [2] * 14], 2, axis=0))
  mask = attention_mask(seg, seg, causal=is_causal)
  cot = jnp.asarray(np.random.default_rng(5).normal(size=q.shape).astype(np.float32))

  def loss(fn):
    return jax.grad(lambda q, k, v: jnp.sum(fn(q, k, v) * cot), argnums=(0, 1, 2))(q, k, v)

  got = loss(lambda q, k, v: chunked_attention(q, k, v, mask=mask, scale=0.35, is_causal=is_causal, block=8))
  want = loss(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=mask, scale=0.35))
  for g, w in zip(got, want, strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_bfloat16_follows_dot_product_attention():
  q, k, v = (jnp.asarray(a, jnp.bfloat16) for a in _qkv(2, 40, 40, 4, 4, 16, seed=6))
  mask = attention_mask(jnp.ones((2, 40), jnp.int32), jnp.ones((2, 40), jnp.int32), causal=True)
  got = chunked_attention(q, k, v, mask=mask, scale=0.25, is_causal=True, block=16)
  want = jax.nn.dot_product_attention(q, k, v, mask=mask, scale=0.25)
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2e-2, atol=2e-2)


def test_is_causal_needs_queries_at_the_keys():
  q, k, v = _qkv(1, 4, 9, 2, 2, 4)
  with pytest.raises(ValueError, match="4 queries and 9 keys"):
    chunked_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), scale=1.0, is_causal=True)


def test_block_size_and_platform_choice():
  assert query_block(512, True) == 128 and query_block(512, False) == 64
  assert query_block(16384, True) == 512  # at most 32 compiled blocks
  assert attention_for("auto", "cpu") == "chunked"
  assert attention_for("auto", "gpu") == attention_for("auto", "tpu") == "xla"
  assert attention_for("cudnn", "gpu") == "cudnn"


def test_grouped_query_decoder_trains_alike_in_blocks_on_meshes(monkeypatch):
  """Training losses with the attention in blocks of 16 (3 per row) equal those of
  `jax.nn.dot_product_attention` on one device, also with heads and batch sharded over a
  (2, 2, 2) mesh and all 8 devices on `tensor` (grouped queries: 8 query heads on 4)."""
  from t5x_like import config as C
  from t5x_like.layers import attention
  from t5x_like.train.setup import init_state, make_setup

  monkeypatch.setattr(attention, "query_block", lambda length, is_causal: 16)
  b, t = 8, 48
  rng = np.random.default_rng(0)
  tokens = rng.integers(3, 120, (b, t)).astype(np.int32)
  seg = np.ones((b, t), np.int32)
  seg[:, 20:] = 2  # a second document across the block borders
  seg[::3, 40:] = 0
  pos = np.where(np.arange(t) < 20, np.arange(t), np.arange(t) - 20)[None].repeat(b, 0).astype(np.int32)
  batch = {"decoder_input_tokens": np.roll(tokens, 1, 1), "decoder_target_tokens": tokens,
           "decoder_segment_ids": seg, "decoder_positions": pos,
           "decoder_loss_weights": (seg > 0).astype(np.float32)}

  def losses(impl, shape, rules):
    cfg = C.replace(C.Config(), model=dict(family="decoder", vocab_size=128, d_model=32, num_layers=2,
                                           num_heads=8, num_kv_heads=4, d_ff=64, attention_impl=impl),
                    data=dict(seq_len=t), train=dict(batch_size=b, steps=3),
                    optimizer=dict(warmup_steps=0, learning_rate=1e-2),
                    mesh=dict(data=shape[0], fsdp=shape[1], tensor=shape[2], rules=rules))
    setup = make_setup(cfg, jax.devices()[:int(np.prod(shape))])
    state = init_state(setup, cfg, 0)
    placed = {k: jax.device_put(v, setup.batch_sharding) for k, v in batch.items()}
    out = []
    for _ in range(3):
      state, m = setup.train_step(state, placed, jax.random.key(0))
      out.append(float(m["loss"]))
    return np.array(out)

  want = losses("xla", (1, 1, 1), "fsdp")
  assert want[-1] < want[0]
  for shape, rules in [((1, 1, 1), "fsdp"), ((2, 2, 2), "fsdp_tp"), ((1, 1, 8), "tp")]:
    np.testing.assert_allclose(losses("chunked", shape, rules), want, rtol=1e-5, err_msg=f"{shape} {rules}")
