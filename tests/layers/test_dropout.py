"""Dropout's 16-bit keep masks against the binomial law, and the remat policies keeping the
masks instead of drawing them again in the backward pass."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t5x_like.layers import transformer
from t5x_like.layers.common import dropout, keep_mask


@pytest.mark.parametrize("rate,shape", [(0.1, (64, 256, 64)), (0.5, (32, 128, 127)), (0.03, (1_000_003,))])
def test_keep_mask_follows_the_binomial_law(rate, shape):
  keep, p = keep_mask(jax.random.key(1), rate, shape)
  assert keep.shape == shape and keep.dtype == jnp.bool_
  assert p == round((1 - rate) * 65536) / 65536 and abs(p - (1 - rate)) < 8e-6
  n = math.prod(shape)
  k = np.asarray(keep).reshape(-1, shape[-1])
  # The kept fraction within 5 standard deviations of n * p.
  assert abs(k.sum() - n * p) < 5 * math.sqrt(n * p * (1 - p))
  # Both 16-bit halves of a word decide elements (the first and second half of each row):
  # each half alone has the rate, and they are uncorrelated.
  half = (shape[-1] + 1) // 2
  lo, hi = k[:, :half].astype(float), k[:, half:].astype(float)
  for part in (lo, hi):
    assert abs(part.mean() - p) < 5 * math.sqrt(p * (1 - p) / part.size)
  m = min(lo.shape[1], hi.shape[1])
  corr = np.corrcoef(lo[:, :m].ravel(), hi[:, :m].ravel())[0, 1]
  assert abs(corr) < 5 / math.sqrt(lo[:, :m].size)


def test_dropout_is_unbiased_and_deterministic():
  x = jnp.ones((128, 512))
  y = dropout(x, 0.25, jax.random.key(3))
  kept = np.asarray(y) != 0
  _, p = keep_mask(jax.random.key(3), 0.25, x.shape)
  np.testing.assert_allclose(np.asarray(y)[kept], 1 / p, rtol=1e-6)
  assert abs(float(y.mean()) - 1.0) < 5 * math.sqrt((1 - p) / p / x.size)
  np.testing.assert_array_equal(y, dropout(x, 0.25, jax.random.key(3)))
  assert not np.array_equal(y, dropout(x, 0.25, jax.random.key(4)))
  assert dropout(x, 0.25, None) is x and dropout(x, 0.0, jax.random.key(3)) is x


@pytest.mark.parametrize("policy,draws", [("dots", 1), ("dots_no_batch", 1), ("full", 2)])
def test_remat_policies_keep_the_masks(policy, draws):
  """Under `dots` the backward pass reuses the forward's keep mask (one draw of random
  bits in the gradient's program); `full` keeps nothing and draws it again."""
  def loss(x, rng):
    def layer(x):
      return jnp.tanh(dropout(x @ x, 0.1, rng)).sum()
    return jax.checkpoint(layer, policy=transformer._REMAT[policy])(x)

  x = jnp.asarray(np.random.default_rng(0).normal(0, 0.3, (8, 8)), jnp.float32)
  rng = jax.random.key(0)
  assert str(jax.make_jaxpr(jax.grad(loss))(x, rng)).count("random_bits") == draws
  # The same gradient either way.
  g = jax.grad(loss)(x, rng)
  keep, p = keep_mask(rng, 0.1, (8, 8))
  xn, kn = np.asarray(x, np.float64), np.asarray(keep)
  dh = kn / p * (1 - np.tanh(np.where(kn, xn @ xn / p, 0)) ** 2)  # d loss / d (x @ x)
  want = dh @ xn.T + xn.T @ dh
  np.testing.assert_allclose(g, want, rtol=1e-5)
