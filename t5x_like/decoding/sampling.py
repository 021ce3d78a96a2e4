"""Greedy decoding and sampling (temperature, top-k, top-p), one token per row per step.

`sample` is a `jax.lax.while_loop` over a family's `extend` (or any function with its
signature): static shapes, one compile per option set, and an early exit once every row
has produced EOS. Tokens after a row's EOS are 0.

Filters apply in the order temperature, top-k, top-p:
- top-k keeps the k most likely tokens;
- top-p ("nucleus sampling", Holtzman et al. 2020, "The Curious Case of Neural Text
  Degeneration") keeps the smallest set of most likely tokens whose probability mass
  reaches p: a token stays when the mass of the tokens ranked above it is below p, so the
  most likely token always stays and top_p -> 0 is greedy.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Extend = Callable  # (state, tokens_b) -> (logits_bv, state)


def nucleus(sorted_logits_bk: jax.Array, top_p: float) -> jax.Array:
  """Logits sorted in decreasing order with those outside the top-p nucleus set to -inf."""
  probs_bk = jax.nn.softmax(sorted_logits_bk, axis=-1)
  mass_above_bk = jnp.cumsum(probs_bk, axis=-1) - probs_bk
  keep_bk = (mass_above_bk < top_p).at[:, 0].set(True)
  return jnp.where(keep_bk, sorted_logits_bk, -jnp.inf)


def _categorical(key: jax.Array, logits_bv: jax.Array) -> jax.Array:
  if key.ndim == 0:
    return jax.random.categorical(key, logits_bv, axis=-1)
  return jax.vmap(lambda k, row_v: jax.random.categorical(k, row_v))(key, logits_bv)


def select_tokens(logits_bv: jax.Array, key: jax.Array, *, temperature: float = 0.0,
                  top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """One token per row: the argmax when `temperature` is 0, else a draw from the softmax
  of logits / temperature restricted by `top_k` (0: off) and `top_p` (1: off). `key` is
  one key for the batch, or one per row (`[b]`: a row's draw then depends on its key
  alone, not on the rows beside it)."""
  logits_bv = logits_bv.astype(jnp.float32)
  if temperature == 0.0:
    return jnp.argmax(logits_bv, axis=-1).astype(jnp.int32)
  logits_bv = logits_bv / temperature
  vocab = logits_bv.shape[-1]
  if top_k <= 0 and top_p >= 1.0:
    return _categorical(key, logits_bv).astype(jnp.int32)
  # Draw among the candidates in decreasing order (all of them for top-p alone); the
  # draw's index maps back to the token id.
  values_bk, ids_bk = jax.lax.top_k(logits_bv, min(top_k, vocab) if top_k > 0 else vocab)
  if top_p < 1.0:
    values_bk = nucleus(values_bk, top_p)
  pick_b = _categorical(key, values_bk)
  return jnp.take_along_axis(ids_bk, pick_b[:, None], axis=-1)[:, 0].astype(jnp.int32)


def sample(logits_bv: jax.Array, state, extend: Extend, *, max_new_tokens: int, eos_id: int,
           rng: jax.Array, temperature: float = 0.0, top_k: int = 0,
           top_p: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """(tokens `[b, max_new_tokens]`, log-probability of each row's tokens `[b]`).

  `logits_bv` are the first new token's (from `prefill`). The log-probability sums the
  model's own (unfiltered, temperature 1) log-softmax over the tokens up to and with EOS.
  Step i draws with key `fold_in(rng, i)`, so a seed gives the same tokens whatever the
  path (cached or not) that computed the logits. `rng` is one key, or one per row (`[b]`),
  which makes each row's tokens independent of the batch it is decoded in.
  """
  b = logits_bv.shape[0]

  def choose(i, logits_bv, out_bn, done_b, logprob_b):
    logits_bv = logits_bv.astype(jnp.float32)
    key = jax.vmap(jax.random.fold_in, (0, None))(rng, i) if rng.ndim else jax.random.fold_in(rng, i)
    token_b = select_tokens(logits_bv, key, temperature=temperature,
                            top_k=top_k, top_p=top_p)
    token_b = jnp.where(done_b, 0, token_b)
    logp_b = jnp.take_along_axis(jax.nn.log_softmax(logits_bv), token_b[:, None], axis=-1)[:, 0]
    logprob_b = logprob_b + jnp.where(done_b, 0.0, logp_b)
    out_bn = jax.lax.dynamic_update_slice(out_bn, token_b[:, None], (0, i))
    return token_b, out_bn, done_b | (token_b == eos_id), logprob_b

  # Each turn picks token i and feeds it; the last token is picked after the loop, as it
  # is never fed (the cache holds no slot for it).
  def body(carry):
    i, logits_bv, state, out_bn, done_b, logprob_b = carry
    token_b, out_bn, done_b, logprob_b = choose(i, logits_bv, out_bn, done_b, logprob_b)
    logits_bv, state = extend(state, token_b)
    return i + 1, logits_bv, state, out_bn, done_b, logprob_b

  def cond(carry):
    return (carry[0] < max_new_tokens - 1) & ~jnp.all(carry[4])

  init = (jnp.int32(0), logits_bv, state, jnp.zeros((b, max_new_tokens), jnp.int32),
          jnp.zeros((b,), bool), jnp.zeros((b,), jnp.float32))
  i, logits_bv, _, out_bn, done_b, logprob_b = jax.lax.while_loop(cond, body, init)
  _, out_bn, _, logprob_b = choose(i, logits_bv, out_bn, done_b, logprob_b)
  return out_bn, logprob_b
