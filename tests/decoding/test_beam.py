"""Beam search against answers known in advance: a stub model whose next-token
log-probabilities depend only on the previous token (a table), so every sequence's
probability is a product read off the table, plus the real cached model for beam 1."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from decoding_helpers import model_for, prompts, run
from flax import nnx

from t5x_like.decoding import beam, sampling
from t5x_like.decoding.generate import DecodeOptions
from t5x_like.decoding.state import DecodeState


def _stub(table_vv, starts):
  """(first logits, state, extend) of a bigram "model" for rows starting at `starts`:
  the logits of the next token are row `previous token` of log(`table_vv`)."""
  table = jnp.asarray(np.log(table_vv), jnp.float32)
  state = DecodeState({}, {"last": jnp.asarray(starts, jnp.int32)})

  def extend(state, tokens_b):
    return table[tokens_b], DecodeState({}, {"last": tokens_b})

  return table[state.rows["last"]], state, extend


def _beam(table, starts, *, k, n, eos, alpha=0.0):
  logits, state, extend = _stub(table, starts)
  fn = jax.jit(lambda lg, st: beam.beam_search(lg, st, extend, beam_size=k, max_new_tokens=n,
                                                eos_id=eos, alpha=alpha))
  tokens, score = fn(logits, state)
  return np.asarray(tokens), np.asarray(score)


def _greedy(table, starts, *, n, eos):
  logits, state, extend = _stub(table, starts)
  fn = jax.jit(lambda lg, st: sampling.sample(lg, st, extend, max_new_tokens=n, eos_id=eos,
                                              rng=jax.random.key(0)))
  tokens, logprob = fn(logits, state)
  return np.asarray(tokens), np.asarray(logprob)


# Token 3 is EOS; 4 is the start. From the start, 1 is likelier than 2, but after 1 every
# token is a coin toss while 2 is followed by EOS almost surely: greedy takes 1 and
# ends worse than the beam's "2 EOS".
TRAP = np.array([
    [0.30, 0.25, 0.25, 0.20, 0.00],  # after 0
    [0.30, 0.25, 0.25, 0.20, 0.00],  # after 1
    [0.004, 0.003, 0.003, 0.99, 0.00],  # after 2
    [0.30, 0.25, 0.25, 0.20, 0.00],  # after EOS (never read)
    [0.00, 0.60, 0.40, 0.00, 0.00],  # the start
]) + 1e-9


def test_beam_beats_greedy_on_a_trap():
  greedy, greedy_lp = _greedy(TRAP, [4], n=4, eos=3)
  best, score = _beam(TRAP, [4], k=2, n=4, eos=3)
  assert greedy[0].tolist() == [1, 0, 0, 0]
  assert best[0].tolist() == [2, 3, 0, 0]  # EOS, then padding
  assert score[0] == pytest.approx(np.log(0.4) + np.log(0.99), abs=1e-5)
  assert score[0] > greedy_lp[0]


def _all_scores(table, start, n, eos, alpha):
  """Every hypothesis (ended by EOS, or n tokens long) and its GNMT-penalised score."""
  v = table.shape[0]
  out = {}
  for length in range(1, n + 1):
    for seq in itertools.product(range(v), repeat=length):
      if eos in seq[:-1] or (length < n and seq[-1] != eos):
        continue
      logp = sum(np.log(table[a, b]) for a, b in zip((start,) + seq[:-1], seq, strict=True))
      out[seq] = logp / ((5 + length) / 6) ** alpha
  return out


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_wide_beam_finds_the_best_hypothesis(alpha):
  """With as many beams as hypotheses, beam search is exhaustive: it must return the
  best-scoring one, under each length penalty (long ones win as alpha grows). Rows with
  different starts share the batch, each getting its own answer."""
  table = np.random.default_rng(3).dirichlet(np.ones(4) * 0.7, size=4)  # EOS is 2
  n, starts = 3, [0, 1, 3]
  best, score = _beam(table, starts, k=16, n=n, eos=2, alpha=alpha)
  for row, start in enumerate(starts):
    scores = _all_scores(table, start, n, 2, alpha)
    want = max(scores, key=scores.get)
    assert tuple(best[row, :len(want)].tolist()) == want and not best[row, len(want):].any()
    assert score[row] == pytest.approx(scores[want], rel=1e-5)


def test_beam_of_one_is_greedy_on_a_random_table():
  table = np.random.default_rng(0).dirichlet(np.ones(9), size=9)
  starts = [0, 3, 5, 8]
  greedy, lp = _greedy(table, starts, n=6, eos=7)
  best, score = _beam(table, starts, k=1, n=6, eos=7)
  np.testing.assert_array_equal(best, greedy)
  np.testing.assert_allclose(score, lp, rtol=1e-5)
  assert (greedy == 7).any() and (greedy[:, -1] == 0).any()  # rows ended early


def test_beam_one_equals_greedy_and_cache_follows_beams():
  """On the real cached model: beam 1 is greedy, and a wider beam (whose cache rows are
  reordered at every step) returns what the uncached reference returns."""
  model, batch = model_for("rope_gqa"), prompts()
  greedy, greedy_lp = run(model, batch, DecodeOptions(max_new_tokens=6, eos_id=-1))
  graphdef, params = nnx.split(model)

  @jax.jit
  def beam_of_one(params, batch):
    m = nnx.merge(graphdef, params)
    logits, state = m.prefill(batch, max_new_tokens=6)
    return beam.beam_search(logits, state, m.extend, beam_size=1, max_new_tokens=6, eos_id=-1)

  one, score = beam_of_one(params, batch)
  np.testing.assert_array_equal(np.asarray(one), greedy)
  np.testing.assert_allclose(np.asarray(score), greedy_lp, rtol=1e-5)
  options = DecodeOptions(max_new_tokens=6, eos_id=int(greedy[0, 2]), beam_size=3, length_penalty=0.6)
  cached, cached_score = run(model, batch, options)
  uncached, uncached_score = run(model, batch, options, cached=False)
  np.testing.assert_array_equal(cached, uncached)
  np.testing.assert_allclose(cached_score, uncached_score, rtol=1e-4)
  assert (cached != greedy).any()  # the beams found something else than greedy somewhere
