"""Token selection: greedy limits of the filters, the k best and the nucleus as hard
bounds, and draws that follow the (tempered) softmax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from decoding_helpers import model_for, prompts, run

from t5x_like.decoding.generate import DecodeOptions
from t5x_like.decoding.sampling import select_tokens

DRAWS = 4000


def _draws(logits, **options):
  """`[DRAWS, rows]` tokens, one key per draw."""
  keys = jax.random.split(jax.random.key(0), DRAWS)
  fn = jax.jit(jax.vmap(lambda key: select_tokens(jnp.asarray(logits), key, **options)))
  return np.asarray(fn(keys))


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


LOGITS = np.random.default_rng(0).normal(0, 1.5, (3, 40)).astype(np.float32)


def test_top_k_one_and_a_tiny_top_p_are_greedy():
  argmax = LOGITS.argmax(-1)
  for options in (dict(temperature=1.0, top_k=1), dict(temperature=2.0, top_p=1e-6),
                  dict(temperature=1e-4)):
    draws = _draws(LOGITS, **options)
    assert (draws == argmax).all(), options


def test_top_k_stays_within_the_k_best_and_reaches_all_of_them():
  draws = _draws(LOGITS, temperature=1.0, top_k=5)
  for row in range(LOGITS.shape[0]):
    best = set(np.argsort(-LOGITS[row])[:5].tolist())
    assert set(draws[:, row].tolist()) == best


def test_top_p_draws_from_the_nucleus_in_proportion():
  p = 0.8
  draws = _draws(LOGITS, temperature=1.0, top_p=p)
  for row in range(LOGITS.shape[0]):
    probs = _softmax(LOGITS[row])
    order = np.argsort(-probs)
    mass_above = np.cumsum(probs[order]) - probs[order]
    nucleus = order[mass_above < p]  # the smallest top set whose mass reaches p
    assert probs[nucleus].sum() >= p > probs[nucleus[:-1]].sum()
    assert set(draws[:, row].tolist()) == set(nucleus.tolist())
    freq = np.bincount(draws[:, row], minlength=probs.size)[nucleus] / DRAWS
    np.testing.assert_allclose(freq, probs[nucleus] / probs[nucleus].sum(), atol=0.03)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_plain_sampling_follows_the_tempered_softmax(temperature):
  draws = _draws(LOGITS[:1], temperature=temperature)
  freq = np.bincount(draws[:, 0], minlength=LOGITS.shape[1]) / DRAWS
  np.testing.assert_allclose(freq, _softmax(LOGITS[0] / temperature), atol=0.03)


def test_generate_with_top_k_one_is_greedy():
  model, batch = model_for("rope_gqa"), prompts()
  greedy, greedy_lp = run(model, batch, DecodeOptions(max_new_tokens=6, eos_id=-1))
  top1, top1_lp = run(model, batch, DecodeOptions(max_new_tokens=6, eos_id=-1, temperature=0.7, top_k=1),
                      jax.random.key(3))
  np.testing.assert_array_equal(top1, greedy)
  np.testing.assert_allclose(top1_lp, greedy_lp, rtol=1e-5)


def test_options_that_cannot_work_are_refused():
  from t5x_like.errors import ConfigError
  for bad in (dict(max_new_tokens=0), dict(temperature=-1.0), dict(top_p=0.0), dict(top_k=-2),
              dict(beam_size=0), dict(beam_size=4, temperature=0.8), dict(temperature=float("nan")), dict(temperature=float("inf")),
              dict(top_p=float("nan"), temperature=1.0), dict(beam_size=2, length_penalty=float("nan")),
              dict(eos_id=-5)):
    with pytest.raises(ConfigError):
      DecodeOptions(**bad).check()
  # top-k or top-p at temperature 0 were silently greedy
  for bad in (dict(top_k=3), dict(top_p=0.9)):
    with pytest.raises(ConfigError, match="set a temperature"):
      DecodeOptions(**bad).check()
