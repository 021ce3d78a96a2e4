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

from t5x_like import features as F
from t5x_like.config import ModelConfig
from t5x_like.layers.attention import attention_mask
from t5x_like.layers.common import dtype_of, param, split_rng
from t5x_like.layers.embeddings import Embed
from t5x_like.layers.norms import Norm
from t5x_like.layers.positions import LearnedPositions, RelativePositionBias
from t5x_like.layers.transformer import Stack
from t5x_like.models import skill
from t5x_like.models.base import LanguageModel, side_inputs


class EncoderOnly(LanguageModel):
  contract = F.ENCODER_ONLY
  skill = staticmethod(skill.encoder_skill)

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
    tokens_bt, segments_bt, positions_bt = side_inputs(batch, F.ENCODER)
    r_embed, r_stack = split_rng(rng, 2)
    types_btd = None
    if cfg.type_vocab_size:
      types_bt = batch.get(F.ENCODER_TOKEN_TYPE_IDS)
      if types_bt is None:
        types_bt = jnp.zeros_like(tokens_bt)
      types_btd = self.type_embed(types_bt, dtype_of(cfg.dtype))
    x_btd = self.embed_inputs(tokens_bt, positions_bt, getattr(self, "pos_embed", None), r_embed,
                              extra_btd=types_btd, norm=getattr(self, "embed_norm", None))
    ctx = {"self_mask": attention_mask(segments_bt, segments_bt, causal=False),
           "positions": positions_bt}
    return self.run_stack(self.stack, x_btd, ctx, getattr(self, "rel_bias", None),
                          getattr(self, "final_norm", None), r_stack)

  def features(self, batch: dict, rng: jax.Array | None = None) -> jax.Array:
    """The encoder's states, through BERT's MLM transform if the model has one."""
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
    return x_btd

  def predict(self, batch: dict, **unused) -> jax.Array:
    """The most likely token at every position, `[b, t]` (fills in the masked tokens)."""
    return jnp.argmax(self(batch), axis=-1).astype(jnp.int32)
