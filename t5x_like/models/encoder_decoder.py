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

import jax
import jax.numpy as jnp
from flax import nnx

from t5x_like.config import ModelConfig
from t5x_like.layers.attention import attention_mask
from t5x_like.layers.common import dropout, dtype_of, param, split_rng
from t5x_like.layers.embeddings import Embed
from t5x_like.layers.norms import Norm
from t5x_like.layers.positions import LearnedPositions, RelativePositionBias
from t5x_like.layers.transformer import ACTIVATION_AXES, Stack
from t5x_like.models.base import LanguageModel
from t5x_like.models.decoder import default_positions
from t5x_like.models.encoder import encoder_segments
from t5x_like.runtime import shard


class EncoderDecoder(LanguageModel):
  target_prefix = "decoder"

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

  def _embed(self, tokens_bt, positions_bt, pos_embed, rng):
    x_btd = self.embed(tokens_bt, dtype_of(self.cfg.dtype))
    if pos_embed is not None:
      x_btd = x_btd + pos_embed(positions_bt).astype(x_btd.dtype)
    return shard(dropout(x_btd, self.cfg.dropout_rate, rng), ACTIVATION_AXES)

  def encode(self, batch: dict, rng: jax.Array | None = None) -> jax.Array:
    """Encoder output `[b, s, d]` (after the final norm)."""
    cfg = self.cfg
    tokens_bs = batch["encoder_input_tokens"]
    segments_bs = encoder_segments(batch)
    positions_bs = batch.get("encoder_positions")
    if positions_bs is None:
      positions_bs = default_positions(tokens_bs)
    r_embed, r_stack = split_rng(rng, 2)
    x_bsd = self._embed(tokens_bs, positions_bs, getattr(self, "encoder_pos_embed", None), r_embed)
    ctx = {"self_mask": attention_mask(segments_bs, segments_bs, causal=False),
           "positions": positions_bs}
    if cfg.position == "relative":
      ctx["self_bias"] = self.encoder_rel_bias(positions_bs, positions_bs)
    x_bsd = self.encoder(x_bsd, ctx, r_stack)
    if cfg.norm_position == "pre":
      x_bsd = self.encoder_norm(x_bsd)
    return x_bsd

  def decode(self, batch: dict, encoded_bsd: jax.Array, rng: jax.Array | None = None) -> jax.Array:
    """Decoder logits `[b, t, vocab]` given the encoder output."""
    cfg = self.cfg
    tokens_bt = batch["decoder_input_tokens"]
    segments_bt = batch.get("decoder_segment_ids")
    if segments_bt is None:  # decoder inputs start with 0 (BOS), so 0 cannot mean padding here
      segments_bt = jnp.ones_like(tokens_bt)
    positions_bt = batch.get("decoder_positions")
    if positions_bt is None:
      positions_bt = default_positions(tokens_bt)
    r_embed, r_stack = split_rng(rng, 2)
    x_btd = self._embed(tokens_bt, positions_bt, getattr(self, "decoder_pos_embed", None), r_embed)
    ctx = {"self_mask": attention_mask(segments_bt, segments_bt, causal=True),
           "cross_mask": attention_mask(segments_bt, encoder_segments(batch), causal=False),
           "positions": positions_bt, "encoded": encoded_bsd.astype(x_btd.dtype)}
    if cfg.position == "relative":
      ctx["self_bias"] = self.decoder_rel_bias(positions_bt, positions_bt)
    x_btd = self.decoder(x_btd, ctx, r_stack)
    if cfg.norm_position == "pre":
      x_btd = self.decoder_norm(x_btd)
    if cfg.rescale_decoder_output:
      # Mesh TF T5 reads logits through the (unit-scale) embedding table; this keeps them O(1).
      x_btd = x_btd * jnp.asarray(cfg.d_model ** -0.5, x_btd.dtype)
    if cfg.tie_embeddings:
      logits_btv = self.embed.attend(x_btd)
    else:
      logits_btv = jnp.einsum("btd,dv->btv", x_btd, self.head[...].astype(x_btd.dtype))
    return shard(logits_btv, ("batch", "length", "vocab"))

  def __call__(self, batch: dict, rng: jax.Array | None = None) -> jax.Array:
    r_enc, r_dec = split_rng(rng, 2)
    return self.decode(batch, self.encode(batch, r_enc), r_dec)

  def predict(self, batch: dict, *, max_new_tokens: int = 8, eos_id: int = 1) -> jax.Array:
    """Greedy decoding, `[b, max_new_tokens]`; tokens after an EOS are 0.

    The encoder runs once. The decoder re-runs over a static buffer each step: one
    compile and exact, at O(new_tokens^2) cost, which suits short answers (see decode.py).
    Each row holds one example (no packing).
    """
    enc = {k: v for k, v in batch.items() if k.startswith("encoder_")}
    encoded_bsd = self.encode(enc)
    b = encoded_bsd.shape[0]
    rows = jnp.arange(b)

    def step(i, carry):
      out_bn, done_b = carry
      # Decoder input: the tokens so far, shifted right behind BOS (0).
      inputs_bn = jnp.pad(out_bn[:, :-1], ((0, 0), (1, 0)))
      logits_bnv = self.decode(dict(enc, decoder_input_tokens=inputs_bn), encoded_bsd)
      next_b = jnp.argmax(logits_bnv[:, i], axis=-1).astype(jnp.int32)
      next_b = jnp.where(done_b, 0, next_b)
      return out_bn.at[rows, i].set(next_b), done_b | (next_b == eos_id)

    init = (jnp.zeros((b, max_new_tokens), jnp.int32), jnp.zeros((b,), bool))
    out_bn, _ = jax.lax.fori_loop(0, max_new_tokens, step, init)
    return out_bn
