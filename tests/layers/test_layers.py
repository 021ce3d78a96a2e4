"""Layers against numpy references written from the published formulas."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from t5x_like.layers.attention import Attention, attention_mask
from t5x_like.layers.mlp import Mlp
from t5x_like.layers.norms import Norm
from t5x_like.layers.positions import apply_rope, relative_position_bucket


def test_rmsnorm_and_layernorm_match_numpy():
  x = np.random.default_rng(0).normal(size=(2, 3, 16)).astype(np.float32)
  rms = Norm(16, kind="rmsnorm", eps=1e-6, rngs=nnx.Rngs(0))
  want = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(rms(jnp.asarray(x)), want, rtol=1e-5, atol=1e-6)
  ln = Norm(16, kind="layernorm", eps=1e-5, rngs=nnx.Rngs(0))
  mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  np.testing.assert_allclose(ln(jnp.asarray(x)), (x - mu) / np.sqrt(var + 1e-5), rtol=1e-5, atol=1e-5)


def _rope_numpy(x, pos, theta):
  h = x.shape[-1]
  out = np.empty_like(x)
  for i in range(h // 2):
    ang = pos * theta ** (-2 * i / h)
    c, s = np.cos(ang)[..., None], np.sin(ang)[..., None]
    a, b = x[..., i], x[..., i + h // 2]
    out[..., i] = a * c[..., 0] - b * s[..., 0]
    out[..., i + h // 2] = b * c[..., 0] + a * s[..., 0]
  return out


def test_rope_matches_formula_and_is_relative():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(1, 5, 2, 8)).astype(np.float32)
  pos = np.arange(5)[None].astype(np.int32)
  got = np.asarray(apply_rope(jnp.asarray(x), jnp.asarray(pos), 10_000.0))
  want = _rope_numpy(x, pos[..., None].astype(np.float64), 10_000.0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # q.k after rotation depends only on the position difference.
  q, k = rng.normal(size=(1, 1, 1, 8)).astype(np.float32), rng.normal(size=(1, 1, 1, 8)).astype(np.float32)
  def dot(pq, pk):
    rq = apply_rope(jnp.asarray(q), jnp.array([[pq]]), 100.0)
    rk = apply_rope(jnp.asarray(k), jnp.array([[pk]]), 100.0)
    return float(jnp.sum(rq * rk))
  assert dot(3, 1) == pytest.approx(dot(10, 8), rel=1e-4)


def _bucket_reference(rel, bidirectional, num_buckets, max_distance):
  """T5 relative position bucketing written out per scalar (Raffel et al. 2020, mesh_tensorflow)."""
  ret = 0
  n = -rel
  if bidirectional:
    num_buckets //= 2
    if n < 0:
      ret += num_buckets
    n = abs(n)
  else:
    n = max(n, 0)
  max_exact = num_buckets // 2
  if n < max_exact:
    return ret + n
  val = max_exact + int(math.log(n / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact))
  return ret + min(val, num_buckets - 1)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_buckets_match_reference(bidirectional):
  rel = np.arange(-300, 300)
  got = np.asarray(relative_position_bucket(jnp.asarray(rel), bidirectional=bidirectional, num_buckets=32,
                                            max_distance=128))
  want = np.array([_bucket_reference(int(r), bidirectional, 32, 128) for r in rel])
  np.testing.assert_array_equal(got, want)


def _attention_numpy(x, wq, wk, wv, wo, mask, scale):
  q = np.einsum("btd,dnh->btnh", x, wq)
  k = np.einsum("bsd,dkh->bskh", x, wk)
  v = np.einsum("bsd,dkh->bskh", x, wv)
  rep = wq.shape[1] // wk.shape[1]
  k, v = np.repeat(k, rep, axis=2), np.repeat(v, rep, axis=2)
  logits = np.einsum("btnh,bsnh->bnts", q, k) * scale
  logits = np.where(mask, logits, -1e30)
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  out = np.einsum("bnts,bsnh->btnh", p, v)
  return np.einsum("btnh,nhd->btd", out, wo)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_attention_gqa_with_packing_matches_numpy(kv_heads):
  attn = Attention(16, 4, kv_heads, 8, use_bias=False, std=0.3, rngs=nnx.Rngs(0))
  x = np.random.default_rng(2).normal(size=(2, 6, 16)).astype(np.float32)
  seg = np.array([[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 1, 1]], np.int32)
  mask = np.asarray(attention_mask(jnp.asarray(seg), jnp.asarray(seg), causal=True))
  got = attn(jnp.asarray(x), mask_b1ts=jnp.asarray(mask))
  want = _attention_numpy(x, *(np.asarray(w[...]) for w in (attn.wq, attn.wk, attn.wv, attn.wo)), mask,
                          8 ** -0.5)
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
  # The second document of row 0 gives the same output as when run on its own.
  alone = attn(jnp.asarray(x[:1, 3:5]), mask_b1ts=attention_mask(jnp.ones((1, 2)), jnp.ones((1, 2)), causal=True))
  np.testing.assert_allclose(got[0, 3:5], alone[0], rtol=1e-4, atol=1e-5)


def test_mask_layout():
  seg = jnp.array([[1, 1, 2, 0]])
  m = np.asarray(attention_mask(seg, seg, causal=True))[0, 0]
  want = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], bool)
  np.testing.assert_array_equal(m, want)


@pytest.mark.parametrize("act", ["swiglu", "gated_gelu", "gelu", "relu"])
def test_mlp_matches_numpy(act):
  mlp = Mlp(8, 16, activation=act, use_bias=True, std=0.5, rngs=nnx.Rngs(0))
  x = np.random.default_rng(3).normal(size=(1, 3, 8)).astype(np.float32)
  h = x @ np.asarray(mlp.wi[...]) + np.asarray(mlp.bi[...])
  gelu = lambda z: 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))
  a = {"swiglu": h / (1 + np.exp(-h)), "gated_gelu": gelu(h), "gelu": gelu(h), "relu": np.maximum(h, 0)}[act]
  if act in ("swiglu", "gated_gelu"):
    a = a * (x @ np.asarray(mlp.wg[...]))
  want = a @ np.asarray(mlp.wo[...]) + np.asarray(mlp.bo[...])
  np.testing.assert_allclose(mlp(jnp.asarray(x)), want, rtol=1e-4, atol=1e-5)
