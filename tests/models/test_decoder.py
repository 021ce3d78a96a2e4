import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from t5x_like import config as C
from t5x_like.models import create_model
from t5x_like.models.base import cross_entropy


def tiny(**model):
  cfg = C.ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=4, d_ff=64)
  for k, v in model.items():
    setattr(cfg, k, v)
  return cfg


GPT2 = dict(position="learned", norm="layernorm", mlp_activation="gelu", use_bias=True, max_len=64)
MODERN = dict(position="rope", norm="rmsnorm", mlp_activation="swiglu", num_kv_heads=2)


@pytest.mark.parametrize("style", [GPT2, MODERN, dict(position="relative")])
def test_causal_and_packing_isolated(style):
  model = create_model(tiny(**style), nnx.Rngs(0))
  rng = np.random.default_rng(0)
  a, b = rng.integers(3, 64, 5), rng.integers(3, 64, 7)
  packed = {"decoder_input_tokens": jnp.asarray(np.concatenate([a, b])[None]),
            "decoder_segment_ids": jnp.asarray([[1] * 5 + [2] * 7]),
            "decoder_positions": jnp.asarray([list(range(5)) + list(range(7))])}
  out = model(packed)
  alone_b = model({"decoder_input_tokens": jnp.asarray(b[None])})
  np.testing.assert_allclose(out[0, 5:], alone_b[0], rtol=1e-4, atol=1e-4)
  # Changing a later token leaves earlier logits unchanged.
  changed = dict(packed, decoder_input_tokens=packed["decoder_input_tokens"].at[0, 3].set(7))
  np.testing.assert_allclose(model(changed)[0, :3], out[0, :3], rtol=1e-5, atol=1e-5)
  assert not np.allclose(model(changed)[0, 3], out[0, 3])


def test_scan_and_unrolled_agree():
  scanned = create_model(tiny(scan_layers=True), nnx.Rngs(0))
  unrolled = create_model(tiny(scan_layers=False, remat_policy="full"), nnx.Rngs(0))
  batch = {"decoder_input_tokens": jnp.arange(10)[None] % 64}
  np.testing.assert_allclose(scanned(batch), unrolled(batch), rtol=1e-5, atol=1e-5)


def test_cross_entropy_matches_numpy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 5, 11)).astype(np.float32)
  targets = rng.integers(0, 11, (2, 5))
  weights = rng.integers(0, 2, (2, 5)).astype(np.float32)
  total, aux = cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights), z_loss=1e-2)
  m = logits.max(-1, keepdims=True)
  logz = np.log(np.exp(logits - m).sum(-1)) + m[..., 0]
  nll = logz - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
  np.testing.assert_allclose(aux["nll_sum"], (nll * weights).sum(), rtol=1e-5)
  np.testing.assert_allclose(total, (nll * weights).sum() + 1e-2 * (logz ** 2 * weights).sum(), rtol=1e-5)
  assert aux["weight_sum"] == weights.sum()
  # Accuracy against numpy's argmax, with half the targets set to the argmax so it is not 0.
  targets[0] = logits[0].argmax(-1)
  _, aux = cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.ones((2, 5)))
  want = (logits.argmax(-1) == targets).sum()
  assert aux["correct_sum"] == want and 5 <= want < 10
  # All-equal logits (a zero-initialised head): no target is the top, none is correct.
  _, aux = cross_entropy(jnp.zeros((2, 5, 11)), jnp.asarray(targets), jnp.ones((2, 5)))
  assert aux["correct_sum"] == 0
  # A tie for the top between the target and another token is wrong; the top alone is right
  # at either end of the vocabulary; a NaN logit in the row makes it wrong.
  row = np.zeros((1, 4, 11), np.float32)
  row[0, 0, [3, 7]] = 5.0
  row[0, 1, 0] = 5.0
  row[0, 2, 10] = 5.0
  row[0, 3, [2, 5]] = (5.0, np.nan)
  _, aux = cross_entropy(jnp.asarray(row), jnp.asarray([[3, 0, 10, 2]]), jnp.asarray([[1.0, 0.0, 0.0, 0.0]]))
  assert aux["correct_sum"] == 0
  _, aux = cross_entropy(jnp.asarray(row), jnp.asarray([[3, 0, 10, 2]]), jnp.asarray([[0.0, 1.0, 1.0, 1.0]]))
  assert aux["correct_sum"] == 2


def test_score_is_sum_of_token_logprobs():
  model = create_model(tiny(), nnx.Rngs(0))
  toks = jnp.asarray([[0, 5, 9, 12]])
  tgt = jnp.asarray([[5, 9, 12, 1]])
  batch = {"decoder_input_tokens": toks, "decoder_target_tokens": tgt,
           "decoder_loss_weights": jnp.ones((1, 4))}
  logp = jax.nn.log_softmax(model(batch), -1)
  want = sum(float(logp[0, i, int(tgt[0, i])]) for i in range(4))
  assert float(model.score(batch)[0]) == pytest.approx(want, rel=1e-5)


def test_greedy_decode_matches_step_by_step_argmax():
  model = create_model(tiny(), nnx.Rngs(3))
  prompts = jnp.asarray([[4, 5, 6, 0], [7, 8, 0, 0]])
  lengths = jnp.asarray([3, 2])
  out = np.asarray(model.predict({"prompt_tokens": prompts, "prompt_lengths": lengths},
                                 max_new_tokens=4, eos_id=-1))
  for row in range(2):
    seq = list(np.asarray(prompts[row, :int(lengths[row])]))
    for _ in range(4):
      logits = model({"decoder_input_tokens": jnp.asarray([[0] + seq])})
      seq.append(int(jnp.argmax(logits[0, -1])))
    assert out[row].tolist() == seq[int(lengths[row]):]
