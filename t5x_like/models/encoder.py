"""Encoder-only (BERT-style) masked language model.

Every token attends to every other token of its own segment, so packed examples stay
independent. BERT's extras are config fields: token-type embeddings (`type_vocab_size`),
a normalised embedding sum (`embed_norm`), post-norm blocks (`norm_position="post"`),
exact GELU (`gelu_approximate=False`) and the MLM head (`mlm_head`).
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
from t5x_like.runtime import shard


def encoder_segments(batch: dict, prefix: str = "encoder") -> jax.Array:
  """Segment ids from the batch, or 1 for every non-zero token (0 is padding on this side)."""
  segments_bt = batch.get(f"{prefix}_segment_ids")
  if segments_bt is None:
    segments_bt = (batch[f"{prefix}_input_tokens"] != 0).astype(jnp.int32)
  return segments_bt


class EncoderOnly(LanguageModel):
  target_prefix = "encoder"

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    super().__init__(cfg)
    d, std = cfg.d_model, cfg.init_std
    self.embed = Embed(cfg.vocab_size, d, std=std, rngs=rngs)
    if cfg.type_vocab_size:
      # A token-type table is an embedding over a tiny vocabulary (sentence A / B).
      self.type_embed = Embed(cfg.type_vocab_size, d, std=std, rngs=rngs)
    if cfg.position == "learned":
      self.pos_embed = LearnedPositions(cfg.max_len, d, std=std, rngs=rngs)
    if cfg.position == "relative":
      self.rel_bias = RelativePositionBias(
          cfg.num_heads, num_buckets=cfg.relative_buckets, max_distance=cfg.relative_max_distance,
          bidirectional=True, std=std, rngs=rngs)
    norm = dict(kind=cfg.norm, eps=cfg.norm_eps, rngs=rngs)
    if cfg.embed_norm:
      self.embed_norm = Norm(d, **norm)
    self.stack = Stack(cfg, cfg.num_layers, causal=False, cross=False, rngs=rngs)
    if cfg.norm_position == "pre":
      self.final_norm = Norm(d, **norm)
    if cfg.mlm_head:
      # BERT re-projects the final states before the vocabulary projection; the hidden
      # side of this d x d dense is sharded like an MLP's.
      self.mlm_dense = param(rngs, (d, d), ("embed", "mlp"), std=std)
      self.mlm_dense_bias = param(rngs, (d,), ("mlp",), init="zeros")
      self.mlm_norm = Norm(d, **norm)
      self.output_bias = param(rngs, (cfg.vocab_size,), ("vocab",), init="zeros")
    if not cfg.tie_embeddings:
      self.head = param(rngs, (d, cfg.vocab_size), ("embed", "vocab"), std=std)

  def encode(self, batch: dict, rng: jax.Array | None = None) -> jax.Array:
    """Final hidden states `[b, t, d]` (after the last norm, before the head)."""
    cfg = self.cfg
    tokens_bt = batch["encoder_input_tokens"]
    segments_bt = encoder_segments(batch)
    positions_bt = batch.get("encoder_positions")
    if positions_bt is None:
      positions_bt = default_positions(tokens_bt)
    r_embed, r_stack = split_rng(rng, 2)

    dt = dtype_of(cfg.dtype)
    x_btd = self.embed(tokens_bt, dt)
    if cfg.type_vocab_size:
      types_bt = batch.get("encoder_token_type_ids")
      if types_bt is None:
        types_bt = jnp.zeros_like(tokens_bt)
      x_btd = x_btd + self.type_embed(types_bt, dt)
    if cfg.position == "learned":
      x_btd = x_btd + self.pos_embed(positions_bt).astype(dt)
    if cfg.embed_norm:
      x_btd = self.embed_norm(x_btd)
    x_btd = shard(dropout(x_btd, cfg.dropout_rate, r_embed), ACTIVATION_AXES)

    ctx = {"self_mask": attention_mask(segments_bt, segments_bt, causal=False),
           "positions": positions_bt}
    if cfg.position == "relative":
      ctx["self_bias"] = self.rel_bias(positions_bt, positions_bt)
    x_btd = self.stack(x_btd, ctx, r_stack)
    if cfg.norm_position == "pre":
      x_btd = self.final_norm(x_btd)
    return x_btd

  def __call__(self, batch: dict, rng: jax.Array | None = None) -> jax.Array:
    cfg = self.cfg
    x_btd = self.encode(batch, rng)
    dt = x_btd.dtype
    if cfg.mlm_head:
      h_btd = jnp.einsum("btd,de->bte", x_btd, self.mlm_dense[...].astype(dt))
      h_btd = h_btd + self.mlm_dense_bias[...].astype(dt)
      # BERT's head uses the MLP's activation (hidden_act); gated MLPs fall back to gelu.
      if cfg.mlp_activation == "relu":
        h_btd = jax.nn.relu(h_btd)
      else:
        h_btd = jax.nn.gelu(h_btd, approximate=cfg.gelu_approximate)
      x_btd = self.mlm_norm(h_btd)
    if cfg.tie_embeddings:
      logits_btv = self.embed.attend(x_btd)
    else:
      logits_btv = jnp.einsum("btd,dv->btv", x_btd, self.head[...].astype(dt))
    if cfg.mlm_head:
      logits_btv = logits_btv + self.output_bias[...].astype(dt)
    return shard(logits_btv, ("batch", "length", "vocab"))

  def predict(self, batch: dict, **unused) -> jax.Array:
    """The most likely token at every position, `[b, t]` (fills in the masked tokens)."""
    return jnp.argmax(self(batch), axis=-1).astype(jnp.int32)
