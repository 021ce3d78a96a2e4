"""Layers against numpy references written from the published formulas."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from t5x_like.layers.attention import Attention, attention_mask
from t5x_like.layers.mlp import Mlp
from t5x_like.layers.norms import Norm
from t5x_like.layers.positions import (
  RopeScaling,
  apply_rope,
  relative_position_bucket,
  rope_frequencies,
)


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


def _llama3_frequencies_reference(head_dim, theta, factor, low, high, context):
  """Llama 3.1's rescaling, one frequency at a time as Meta states it (`apply_scaling` in
  github.com/meta-llama/llama-models, models/llama3/model.py): short wavelengths kept, long
  ones divided by the factor, a linear blend in 1/wavelength between the two bands."""
  out = []
  for i in range(head_dim // 2):
    freq = 1.0 / theta ** (2 * i / head_dim)
    wavelength = 2 * math.pi / freq
    if wavelength < context / high:
      out.append(freq)
    elif wavelength > context / low:
      out.append(freq / factor)
    else:
      smooth = (context / wavelength - low) / (high - low)
      out.append((1 - smooth) * freq / factor + smooth * freq)
  return np.array(out)


@pytest.mark.parametrize("head_dim,theta,scaling", [
    (64, 500_000.0, RopeScaling(32.0, 1.0, 4.0, 8192)),  # Llama 3.2 1B
    (128, 500_000.0, RopeScaling(8.0, 1.0, 4.0, 8192)),  # Llama 3.1 8B
    (8, 5000.0, RopeScaling(8.0, 1.0, 4.0, 64)),  # the interop test's: one band each
])
def test_llama3_rope_frequencies_match_the_published_formula(head_dim, theta, scaling):
  got = rope_frequencies(head_dim, theta, scaling)
  want = _llama3_frequencies_reference(head_dim, theta, *scaling)
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, want, rtol=1e-6)
  plain = rope_frequencies(head_dim, theta)
  np.testing.assert_allclose(plain, [theta ** (-2 * i / head_dim) for i in range(head_dim // 2)], rtol=1e-6)
  assert got[0] == plain[0] and got[-1] == pytest.approx(plain[-1] / scaling.factor, rel=1e-6)
  blended = (got != plain) & ~np.isclose(got, plain / scaling.factor, rtol=1e-6)
  assert blended.any()  # every case reaches the blended band
  # apply_rope uses these frequencies: position p rotates pair i by p * freq[i].
  x = np.zeros((1, 1, 1, head_dim), np.float32)
  x[..., 0] = 1.0
  rotated = np.asarray(apply_rope(jnp.asarray(x), jnp.array([[1000]]), theta, scaling))
  np.testing.assert_allclose(rotated[0, 0, 0, [0, head_dim // 2]],
                             [math.cos(1000 * want[0]), math.sin(1000 * want[0])], atol=1e-4)


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


def test_sliding_window_mask_keeps_the_last_window_tokens():
  seg = jnp.array([[1, 1, 1, 1, 1, 1, 2, 2, 2, 0]])
  for window in (1, 2, 3, 20):
    m = np.asarray(attention_mask(seg, seg, causal=True, sliding_window=window))[0, 0]
    s = np.asarray(seg)[0]
    want = np.array([[s[q] == s[k] and 0 <= q - k < window for k in range(10)] for q in range(10)])
    np.testing.assert_array_equal(m, want, err_msg=f"window {window}")
  np.testing.assert_array_equal(attention_mask(seg, seg, causal=True, sliding_window=0),
                                attention_mask(seg, seg, causal=True))


def test_qkv_bias_without_output_bias():
  attn = Attention(16, 4, 2, 8, use_bias=False, qkv_bias=True, std=0.3, rngs=nnx.Rngs(0))
  assert {"bq", "bk", "bv"} <= set(vars(attn)) and not hasattr(attn, "bo")
  plain = Attention(16, 4, 2, 8, use_bias=False, std=0.3, rngs=nnx.Rngs(0))
  assert not hasattr(plain, "bq")
  attn.bv[...] = jnp.ones((2, 8))  # a value bias shifts every output by bias @ wo (softmax rows sum to 1)
  x = jnp.asarray(np.random.default_rng(4).normal(size=(1, 3, 16)).astype(np.float32))
  shift = jnp.einsum("nh,nhd->d", jnp.repeat(attn.bv[...], 2, axis=0), attn.wo[...])
  np.testing.assert_allclose(attn(x) - plain(x), jnp.broadcast_to(shift, (1, 3, 16)), rtol=1e-4, atol=1e-5)


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


def test_dense_matches_einsum_and_differentiates_as_2d_matmuls():
  import jax

  from t5x_like.layers.common import dense
  rng = np.random.default_rng(7)
  x3, w2 = rng.normal(size=(2, 3, 4)).astype(np.float32), rng.normal(size=(4, 6)).astype(np.float32)
  x4, w3 = rng.normal(size=(2, 3, 4, 5)).astype(np.float32), rng.normal(size=(4, 5, 6)).astype(np.float32)
  np.testing.assert_allclose(dense(jnp.asarray(x3), jnp.asarray(w2)), np.einsum("btd,df->btf", x3, w2),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dense(jnp.asarray(x4), jnp.asarray(w3), contract=2),
                             np.einsum("btnh,nhd->btd", x4, w3), rtol=1e-5, atol=1e-5)
  assert dense(jnp.asarray(x3), jnp.ones((4, 2, 3))).shape == (2, 3, 2, 3)  # several output axes
  # The point of `dense`: every matmul of its gradient is 2-D, so XLA CPU needs no transposing
  # copies of [b, t, ...] activations for the weight gradient (docs/benchmarks.md).
  jaxpr = jax.make_jaxpr(jax.grad(lambda x, w: jnp.sum(dense(x, w, contract=2) ** 2), argnums=(0, 1)))(
      jnp.asarray(x4), jnp.asarray(w3))
  dots = [e for e in jaxpr.eqns if e.primitive.name == "dot_general"]
  assert len(dots) == 3 and all(v.aval.ndim == 2 for e in dots for v in e.invars)
