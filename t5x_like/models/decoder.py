"""Decoder-only (GPT-style) language model.

Modern style: RoPE, RMSNorm, SwiGLU, pre-norm, no biases. GPT-2 style: learned positions,
LayerNorm, GELU, biases. Both are the same module with different config fields.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from t5x_like import features as F
from t5x_like.config import ModelConfig
from t5x_like.decoding.state import DecodeState
from t5x_like.layers.attention import attention_mask
from t5x_like.layers.common import dtype_of, param, split_rng
from t5x_like.layers.embeddings import Embed
from t5x_like.layers.norms import Norm
from t5x_like.layers.positions import LearnedPositions, RelativePositionBias
from t5x_like.layers.transformer import Stack
from t5x_like.models import skill
from t5x_like.models.base import LanguageModel, side_inputs


class DecoderOnly(LanguageModel):
  contract = F.DECODER_ONLY
  skill = staticmethod(skill.decoder_skill)
  generates = True
  imported_bos_id = None  # GPT-2 reads its prompt ids as given, with no 0 in front

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    super().__init__(cfg)
    self.embed = Embed(cfg.vocab_size, cfg.d_model, std=cfg.init_std, rngs=rngs)
    if cfg.position == "learned":
      self.pos_embed = LearnedPositions(cfg.max_len, cfg.d_model, std=cfg.init_std, rngs=rngs)
    if cfg.position == "relative":
      self.rel_bias = RelativePositionBias(
          cfg.num_heads, num_buckets=cfg.relative_buckets, max_distance=cfg.relative_max_distance,
          bidirectional=False, std=cfg.init_std, rngs=rngs)
    self.stack = Stack(cfg, cfg.num_layers, causal=True, cross=False, rngs=rngs)
    if cfg.norm_position == "pre":
      self.final_norm = Norm(cfg.d_model, kind=cfg.norm, eps=cfg.norm_eps, rngs=rngs)
    if not cfg.tie_embeddings:
      self.head = param(rngs, (cfg.d_model, cfg.vocab_size), ("embed", "vocab"), std=cfg.init_std)

  def features(self, batch: dict, rng: jax.Array | None = None) -> jax.Array:
    tokens_bt, segments_bt, positions_bt = side_inputs(batch, F.DECODER)
    r_embed, r_stack = split_rng(rng, 2)
    x_btd = self.embed_inputs(tokens_bt, positions_bt, getattr(self, "pos_embed", None), r_embed)
    mask = attention_mask(segments_bt, segments_bt, causal=True, sliding_window=self.cfg.sliding_window)
    prefix_lm = F.DECODER_CAUSAL_ATTENTION in batch
    if prefix_lm:  # the prefix sees itself bidirectionally
      prefix_bt = batch[F.DECODER_CAUSAL_ATTENTION] > 0
      same = segments_bt[:, :, None] == segments_bt[:, None, :]
      mask = mask | (prefix_bt[:, :, None] & prefix_bt[:, None, :] & same)[:, None]
    # "mask_is_causal": the mask hides every later key, so attention may say so (cuDNN then
    # skips those blocks); not for a prefix LM, whose prefix sees keys after it.
    ctx = {"self_mask": mask, "positions": positions_bt, "mask_is_causal": not prefix_lm}
    return self.run_stack(self.stack, x_btd, ctx, getattr(self, "rel_bias", None),
                          getattr(self, "final_norm", None), r_stack)

  # ---- generation (t5x_like/decoding/): row i's token at position j sits in cache slot j

  def prefill(self, batch: dict, *, max_new_tokens: int, bos_id: int | None = 0,
              cached: bool = True):
    """Reads left-aligned prompts (after `bos_id`, unless None) into a cache of the
    prompt buffer's slots plus `max_new_tokens - 1` (the last new token is never fed)."""
    tokens_bp = jnp.asarray(batch[F.PROMPT_TOKENS], jnp.int32)
    lengths_b = jnp.asarray(batch[F.PROMPT_LENGTHS], jnp.int32)
    if bos_id is not None:
      tokens_bp = jnp.pad(tokens_bp, ((0, 0), (1, 0)), constant_values=bos_id)
      lengths_b = lengths_b + 1
    b, p = tokens_bp.shape
    length = p + max_new_tokens - 1
    self.check_decode_length(length)
    if not cached:
      buffer_bl = jnp.pad(tokens_bp, ((0, 0), (0, max_new_tokens - 1)))
      return self._logits_at(buffer_bl, lengths_b - 1), DecodeState(
          {}, {"tokens": buffer_bl, "index": lengths_b})
    # Padding after a prompt is read at position 0: its keys are overwritten by new tokens
    # before any query reaches them, and learned positions stay inside the table.
    slots_p = jnp.arange(p, dtype=jnp.int32)[None]
    positions_bp = jnp.where(slots_p < lengths_b[:, None], slots_p, 0)
    state = DecodeState({"stack": self.stack.init_cache(b, length, dtype_of(self.cfg.dtype))},
                        {"index": jnp.zeros((b,), jnp.int32)})
    x_bpd, state = self._extend(tokens_bp, positions_bp, state)
    x_b1d = jnp.take_along_axis(x_bpd, (lengths_b - 1)[:, None, None], axis=1)
    return self.head_logits(x_b1d)[:, 0], state.replace(rows={"index": lengths_b})

  def extend(self, state: DecodeState, tokens_b: jax.Array):
    index_b = state.rows["index"]
    if not state.layers:  # the uncached reference: the whole buffer again
      buffer_bl = state.rows["tokens"].at[jnp.arange(tokens_b.shape[0]), index_b].set(tokens_b)
      return self._logits_at(buffer_bl, index_b), DecodeState(
          {}, {"tokens": buffer_bl, "index": index_b + 1})
    x_b1d, state = self._extend(tokens_b[:, None], index_b[:, None], state)
    return self.head_logits(x_b1d)[:, 0], state.replace(rows={"index": index_b + 1})

  def _extend(self, tokens_bt, positions_bt, state: DecodeState):
    """The stack over tokens at `positions_bt`, written into the cache from slot
    rows["index"] on."""
    x_btd = self.embed_inputs(tokens_bt, positions_bt, getattr(self, "pos_embed", None), None)
    cache = state.layers["stack"]
    ctx = {"positions": positions_bt, "cache_index": state.rows["index"],
           "self_mask": self.cache_mask(positions_bt, cache["k"].shape[2])}
    x_btd, cache = self.extend_stack(self.stack, x_btd, ctx, getattr(self, "rel_bias", None),
                                     getattr(self, "final_norm", None), cache)
    return x_btd, state.replace(layers={"stack": cache})

  def _logits_at(self, buffer_bl, index_b):
    logits_blv = self({F.DECODER_INPUT_TOKENS: buffer_bl})
    return jnp.take_along_axis(logits_blv, index_b[:, None, None], axis=1)[:, 0]
