"""Greedy decoding for the skill evaluation.

This version re-runs the model over a fixed-size buffer at every step: shapes stay static
(one compile) and it is exact, but costs O(new_tokens x length). It is meant for short
answers on small models; a KV-cache decoder belongs here for long generations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from t5x_like import features as F


def greedy_continue(model, prompt_tokens_bp: jax.Array, prompt_lengths_b: jax.Array, *,
                    max_new_tokens: int, eos_id: int = 1) -> jax.Array:
  """Returns `[batch, max_new_tokens]` greedy tokens after each left-aligned prompt.

  Tokens after an EOS are 0. A decoder-only `model` reads `decoder_input_tokens`, the
  targets shifted right by one with 0 (pad, doubling as BOS) in front.
  """
  b, p = prompt_tokens_bp.shape
  total = p + max_new_tokens
  tokens_bl = jnp.zeros((b, total), jnp.int32).at[:, :p].set(prompt_tokens_bp.astype(jnp.int32))
  rows = jnp.arange(b)

  def step(i, carry):
    tokens_bl, done_b = carry
    inputs_bl = jnp.pad(tokens_bl[:, :-1], ((0, 0), (1, 0)))
    logits_blv = model({F.DECODER_INPUT_TOKENS: inputs_bl})
    pos_b = prompt_lengths_b + i
    next_b = jnp.argmax(logits_blv[rows, pos_b], axis=-1).astype(jnp.int32)
    next_b = jnp.where(done_b, 0, next_b)
    tokens_bl = tokens_bl.at[rows, pos_b].set(next_b)
    return tokens_bl, done_b | (next_b == eos_id)

  tokens_bl, _ = jax.lax.fori_loop(0, max_new_tokens, step, (tokens_bl, jnp.zeros((b,), bool)))
  idx_bn = prompt_lengths_b[:, None] + jnp.arange(max_new_tokens)[None, :]
  return jnp.take_along_axis(tokens_bl, idx_bn, axis=1)
