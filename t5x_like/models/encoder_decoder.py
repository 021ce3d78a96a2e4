"""Encoder-decoder (T5-style) model.

The encoder reads `encoder_input_tokens` bidirectionally; the decoder reads
`decoder_input_tokens` causally and cross-attends to the encoder output. Packing is
honoured on both sides: decoder segment k sees only encoder segment k.

T5 v1.0 and v1.1 are both this module: relative position bias (one table per stack,
shared by all of its layers), `attention_scale=1.0`, RMSNorm, pre-norm and final norms.
v1.0 has a relu MLP and a tied head that reads the decoder output scaled by
d_model**-0.5 (`rescale_decoder_output`); v1.1 has gated GELU and an untied head.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
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
from t5x_like.models.base import (
  LanguageModel,
  head_flops,
  projection_params,
  side_inputs,
  stack_flops,
)


def roll_encoder_rows(batch: dict) -> dict:
  """Each row's encoder side replaced by the next row's: the decoder then predicts its
  targets from another example's input."""
  return {k: np.roll(v, 1, axis=0) if F.ENCODER.owns(k) else v for k, v in batch.items()}


class EncoderDecoder(LanguageModel):
  contract = F.ENCODER_DECODER
  skill = staticmethod(skill.encoder_decoder_skill)
  generates = True

  @classmethod
  def flops_per_sequence(cls, cfg: ModelConfig, inputs_len: int, targets_len: int = 0,
                         scored: float = 1.0) -> float:
    """The encoder reads `inputs_len` tokens and the decoder `targets_len`; the
    cross-attention key/value projections run over the encoder tokens."""
    s, t = inputs_len, targets_len or inputs_len
    dec_layers = cfg.num_decoder_layers or cfg.num_layers
    q_o, k_v = projection_params(cfg)
    h, hd = cfg.num_heads, cfg.head_dim or cfg.d_model // cfg.num_heads
    cross = dec_layers * (6.0 * q_o * t + 6.0 * k_v * s + 12.0 * h * hd * t * s)
    return stack_flops(cfg, cfg.num_layers, s) + stack_flops(cfg, dec_layers, t) + cross + head_flops(cfg, t)

  @classmethod
  def eval_variants(cls) -> dict[str, Callable[[dict], dict]]:
    # Whether the decoder reads its input at all: a decoder that learned only the targets'
    # own statistics scores the same with another row's encoder input.
    return {"eval_loss_other_inputs": roll_encoder_rows}

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    super().__init__(cfg)
    d, std = cfg.d_model, cfg.init_std
    # One embedding table serves the encoder input, the decoder input and (if tied) the head.
    self.embed = Embed(cfg.vocab_size, d, std=std, rngs=rngs)
    if cfg.position == "learned":
      self.encoder_pos_embed = LearnedPositions(cfg.max_len, d, std=std, rngs=rngs)
      self.decoder_pos_embed = LearnedPositions(cfg.max_len, d, std=std, rngs=rngs)
    if cfg.position == "relative":
      bias = dict(num_buckets=cfg.relative_buckets, max_distance=cfg.relative_max_distance,
                  std=std, rngs=rngs)
      self.encoder_rel_bias = RelativePositionBias(cfg.num_heads, bidirectional=True, **bias)
      self.decoder_rel_bias = RelativePositionBias(cfg.num_heads, bidirectional=False, **bias)
    self.encoder = Stack(cfg, cfg.num_layers, causal=False, cross=False, rngs=rngs)
    self.decoder = Stack(cfg, cfg.num_decoder_layers or cfg.num_layers, causal=True, cross=True,
                         rngs=rngs)
    if cfg.norm_position == "pre":
      norm = dict(kind=cfg.norm, eps=cfg.norm_eps, rngs=rngs)
      self.encoder_norm = Norm(d, **norm)
      self.decoder_norm = Norm(d, **norm)
    if not cfg.tie_embeddings:
      self.head = param(rngs, (d, cfg.vocab_size), ("embed", "vocab"), std=std)

  def encode(self, batch: dict, rng: jax.Array | None = None) -> jax.Array:
    """Encoder output `[b, s, d]` (after the final norm)."""
    tokens_bs, segments_bs, positions_bs = side_inputs(batch, F.ENCODER)
    r_embed, r_stack = split_rng(rng, 2)
    x_bsd = self.embed_inputs(tokens_bs, positions_bs, getattr(self, "encoder_pos_embed", None), r_embed)
    ctx = {"self_mask": attention_mask(segments_bs, segments_bs, causal=False),
           "positions": positions_bs}
    return self.run_stack(self.encoder, x_bsd, ctx, getattr(self, "encoder_rel_bias", None),
                          getattr(self, "encoder_norm", None), r_stack)

  def decode(self, batch: dict, encoded_bsd: jax.Array, rng: jax.Array | None = None) -> jax.Array:
    """Decoder states `[b, t, d]` given the encoder output, ready for `head_logits`."""
    tokens_bt, segments_bt, positions_bt = side_inputs(batch, F.DECODER)
    r_embed, r_stack = split_rng(rng, 2)
    x_btd = self.embed_inputs(tokens_bt, positions_bt, getattr(self, "decoder_pos_embed", None), r_embed)
    ctx = {"self_mask": attention_mask(segments_bt, segments_bt, causal=True),
           "cross_mask": attention_mask(segments_bt, side_inputs(batch, F.ENCODER)[1], causal=False),
           "positions": positions_bt, "encoded": encoded_bsd.astype(x_btd.dtype), "mask_is_causal": True}
    x_btd = self.run_stack(self.decoder, x_btd, ctx, getattr(self, "decoder_rel_bias", None),
                           getattr(self, "decoder_norm", None), r_stack)
    return self._rescale(x_btd)

  def _rescale(self, x_btd):
    if self.cfg.rescale_decoder_output:
      # Mesh TF T5 reads logits through the (unit-scale) embedding table; this keeps them O(1).
      x_btd = x_btd * jnp.asarray(self.cfg.d_model ** -0.5, x_btd.dtype)
    return x_btd

  def features(self, batch: dict, rng: jax.Array | None = None) -> jax.Array:
    r_enc, r_dec = split_rng(rng, 2)
    return self.decode(batch, self.encode(batch, r_enc), r_dec)

  # ---- generation (t5x_like/decoding/): the encoder runs once, cross-attention keys and
  # values are computed once, and decoder token i sits in self-attention cache slot i.

  def prefill(self, batch: dict, *, max_new_tokens: int, bos_id: int | None = 0,
              cached: bool = True):
    """Encodes the rows' encoder inputs and feeds the decoder start token (`bos_id`; T5
    uses 0, which None also means). Each row holds one example (no packing)."""
    enc = {k: v for k, v in batch.items() if F.ENCODER.owns(k)}
    encoded_bsd = self.encode(enc).astype(dtype_of(self.cfg.dtype))
    b = encoded_bsd.shape[0]
    self.check_decode_length(max_new_tokens)
    rows = {"index": jnp.zeros((b,), jnp.int32), "encoder_segments": side_inputs(enc, F.ENCODER)[1]}
    if cached:
      layers = {"decoder": {**self.decoder.init_cache(b, max_new_tokens, encoded_bsd.dtype),
                            **self.decoder.cross_keys_values(encoded_bsd)}}
    else:
      layers = {}
      rows.update(encoder=enc, encoded=encoded_bsd,
                  tokens=jnp.zeros((b, max_new_tokens), jnp.int32))
    start_b = jnp.full((b,), 0 if bos_id is None else bos_id, jnp.int32)
    return self.extend(DecodeState(layers, rows), start_b)

  def extend(self, state: DecodeState, tokens_b: jax.Array):
    rows = state.rows
    index_b = rows["index"]
    if not state.layers:  # the uncached reference: the decoder over the whole buffer again
      buffer_bl = rows["tokens"].at[jnp.arange(tokens_b.shape[0]), index_b].set(tokens_b)
      logits_blv = self.head_logits(
          self.decode({**rows["encoder"], F.DECODER_INPUT_TOKENS: buffer_bl}, rows["encoded"]))
      logits_bv = jnp.take_along_axis(logits_blv, index_b[:, None, None], axis=1)[:, 0]
      return logits_bv, state.replace(rows={**rows, "tokens": buffer_bl, "index": index_b + 1})
    positions_b1 = index_b[:, None]
    x_b1d = self.embed_inputs(tokens_b[:, None], positions_b1,
                              getattr(self, "decoder_pos_embed", None), None)
    cache = state.layers["decoder"]
    ctx = {"positions": positions_b1, "cache_index": index_b,
           "self_mask": self.cache_mask(positions_b1, cache["k"].shape[2]),
           "cross_mask": attention_mask(jnp.ones_like(positions_b1), rows["encoder_segments"],
                                        causal=False)}
    x_b1d, cache = self.extend_stack(self.decoder, x_b1d, ctx, getattr(self, "decoder_rel_bias", None),
                                     getattr(self, "decoder_norm", None), cache)
    logits_bv = self.head_logits(self._rescale(x_b1d))[:, 0]
    return logits_bv, DecodeState({"decoder": cache}, {**rows, "index": index_b + 1})
