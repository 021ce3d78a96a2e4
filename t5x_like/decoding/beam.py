"""Beam search with the GNMT length penalty.

Each row keeps `beam_size` live hypotheses ("alive") and the `beam_size` best finished
ones. A step extends every live hypothesis by every token, keeps the 2 x beam_size best
extensions (so that at least beam_size of them do not end in EOS), moves those that end
in EOS to the finished set and keeps the best beam_size others alive. The cache rows
follow their hypotheses (`DecodeState.take_rows`).

Finished hypotheses are ranked by log P(y) / lp(y) with the length penalty of Wu et al.
2016 ("Google's Neural Machine Translation System", eq. 14):

  lp(y) = ((5 + |y|) / (5 + 1)) ** alpha

where |y| counts the generated tokens, EOS included. alpha = 0 ranks by log-probability
alone; larger alpha favours longer outputs (GNMT used 0.6 to 0.7). A row stops early
when its finished set is full and no live hypothesis can still beat its worst member;
the loop stops when every row has. Hypotheses still alive after max_new_tokens compete
with the finished ones at length max_new_tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NEG_INF = -jnp.inf


def length_penalty(length, alpha: float):
  """GNMT's lp(length) (Wu et al. 2016)."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def _take(x_bk, index_bm):
  """x[b, index[b, m]] along axis 1, for arrays with trailing axes too."""
  index = index_bm.reshape(index_bm.shape + (1,) * (x_bk.ndim - 2))
  return jnp.take_along_axis(x_bk, index, axis=1)


def _top(scores_bm, k: int, *arrays):
  """The k best entries of each row of `scores_bm`, and the same entries of `arrays`."""
  best_bk, index_bk = jax.lax.top_k(scores_bm, k)
  return (best_bk, *(_take(a, index_bk) for a in arrays))


def beam_search(logits_bv: jax.Array, state, extend, *, beam_size: int, max_new_tokens: int,
                eos_id: int, alpha: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """(best hypothesis per row `[b, max_new_tokens]`, its length-penalised score `[b]`).

  `logits_bv` and `state` come from `prefill` for b rows; the rows are repeated
  beam_size times here, so the prompt (or encoder input) is read once. Tokens after EOS
  are 0.
  """
  k, n = beam_size, max_new_tokens
  b, vocab = logits_bv.shape
  state = state.take_rows(jnp.repeat(jnp.arange(b), k))
  logp_bkv = jnp.repeat(jax.nn.log_softmax(logits_bv.astype(jnp.float32))[:, None], k, axis=1)
  rows_offset_b1 = (jnp.arange(b) * k)[:, None]

  def expand(i, logp_bkv, alive_lp_bk, alive_seq_bkn, fin_score_bk, fin_seq_bkn):
    """Step i: the new alive and finished sets, and each new alive beam's parent and token."""
    cand_bm, index_bm = jax.lax.top_k((alive_lp_bk[:, :, None] + logp_bkv).reshape(b, k * vocab), 2 * k)
    parent_bm, token_bm = index_bm // vocab, (index_bm % vocab).astype(jnp.int32)
    seq_bmn = _take(alive_seq_bkn, parent_bm).at[:, :, i].set(token_bm)
    eos_bm = token_bm == eos_id
    new_fin_bm = jnp.where(eos_bm, cand_bm / length_penalty(i + 1, alpha), NEG_INF)
    fin_score_bk, fin_seq_bkn = _top(jnp.concatenate([fin_score_bk, new_fin_bm], axis=1), k,
                                     jnp.concatenate([fin_seq_bkn, seq_bmn], axis=1))
    alive_lp_bk, alive_seq_bkn, parent_bk, token_bk = _top(
        jnp.where(eos_bm, NEG_INF, cand_bm), k, seq_bmn, parent_bm, token_bm)
    return alive_lp_bk, alive_seq_bkn, fin_score_bk, fin_seq_bkn, parent_bk, token_bk

  def finished_b(i, alive_lp_bk, fin_score_bk):
    """Rows whose worst finished hypothesis beats anything alive can still reach: the log
    probability only falls, so the best bound is the best alive one's at the most
    favourable length still to come (i + 1 tokens so far)."""
    best_b = alive_lp_bk[:, 0]
    bound_b = jnp.maximum(best_b / length_penalty(i + 2, alpha), best_b / length_penalty(n, alpha))
    worst_b = fin_score_bk[:, -1]
    return (worst_b > NEG_INF) & (worst_b >= bound_b)

  def body(carry):
    i, logp_bkv, state, alive_lp, alive_seq, fin_score, fin_seq, _ = carry
    alive_lp, alive_seq, fin_score, fin_seq, parent_bk, token_bk = expand(
        i, logp_bkv, alive_lp, alive_seq, fin_score, fin_seq)
    state = state.take_rows((rows_offset_b1 + parent_bk).reshape(-1))
    logits_bv, state = extend(state, token_bk.reshape(-1))
    logp_bkv = jax.nn.log_softmax(logits_bv.astype(jnp.float32)).reshape(b, k, vocab)
    return (i + 1, logp_bkv, state, alive_lp, alive_seq, fin_score, fin_seq,
            jnp.all(finished_b(i, alive_lp, fin_score)))

  def cond(carry):
    return (carry[0] < n - 1) & ~carry[-1]

  # Only beam 0 is live at first: the others are copies of it and would repeat its tokens.
  alive_lp = jnp.broadcast_to(jnp.where(jnp.arange(k) == 0, 0.0, NEG_INF), (b, k))
  zeros_seq = jnp.zeros((b, k, n), jnp.int32)
  init = (jnp.int32(0), logp_bkv, state, alive_lp, zeros_seq, jnp.full((b, k), NEG_INF),
          zeros_seq, jnp.bool_(False))
  i, logp_bkv, _, alive_lp, alive_seq, fin_score, fin_seq, _ = jax.lax.while_loop(cond, body, init)
  # The last token is chosen without feeding it; then what is still alive competes at
  # its length (a row that stopped early keeps its finished set, which nothing alive beats).
  done_b = finished_b(i - 1, alive_lp, fin_score)
  alive_lp, alive_seq, fin_score, fin_seq, _, _ = expand(i, logp_bkv, alive_lp, alive_seq, fin_score, fin_seq)
  alive_score = jnp.where(done_b[:, None], NEG_INF, alive_lp / length_penalty(i + 1, alpha))
  fin_score, fin_seq = _top(jnp.concatenate([fin_score, alive_score], axis=1), k,
                            jnp.concatenate([fin_seq, alive_seq], axis=1))
  return fin_seq[:, 0], fin_score[:, 0]
