"""Decoder-only (GPT-style) language model.

Modern style: RoPE, RMSNorm, SwiGLU, pre-norm, no biases. GPT-2 style: learned positions,
LayerNorm, GELU, biases. Both are the same module with different config fields.
"""

from __future__ import annotations

import jax
from flax import nnx

from t5x_like import features as F
from t5x_like.config import ModelConfig
from t5x_like.layers.attention import attention_mask
from t5x_like.layers.common import param, split_rng
from t5x_like.layers.embeddings import Embed
from t5x_like.layers.norms import Norm
from t5x_like.layers.positions import LearnedPositions, RelativePositionBias
from t5x_like.layers.transformer import Stack
from t5x_like.models import skill
from t5x_like.models.base import LanguageModel, side_inputs


class DecoderOnly(LanguageModel):
  contract = F.DECODER_ONLY
  skill = staticmethod(skill.decoder_skill)

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

  def __call__(self, batch: dict, rng: jax.Array | None = None) -> jax.Array:
    tokens_bt, segments_bt, positions_bt = side_inputs(batch, F.DECODER)
    r_embed, r_stack = split_rng(rng, 2)
    x_btd = self.embed_inputs(tokens_bt, positions_bt, getattr(self, "pos_embed", None), r_embed)
    mask = attention_mask(segments_bt, segments_bt, causal=True, sliding_window=self.cfg.sliding_window)
    if F.DECODER_CAUSAL_ATTENTION in batch:  # prefix LM: the prefix sees itself bidirectionally
      prefix_bt = batch[F.DECODER_CAUSAL_ATTENTION] > 0
      same = segments_bt[:, :, None] == segments_bt[:, None, :]
      mask = mask | (prefix_bt[:, :, None] & prefix_bt[:, None, :] & same)[:, None]
    ctx = {"self_mask": mask, "positions": positions_bt}
    x_btd = self.run_stack(self.stack, x_btd, ctx, getattr(self, "rel_bias", None),
                           getattr(self, "final_norm", None), r_stack)
    return self.head_logits(x_btd)

  def predict(self, batch: dict, *, max_new_tokens: int = 8, eos_id: int = 1) -> jax.Array:
    """Greedy continuation of left-aligned prompts; see t5x_like.decode."""
    from t5x_like.decode import greedy_continue
    return greedy_continue(self, batch[F.PROMPT_TOKENS], batch[F.PROMPT_LENGTHS],
                           max_new_tokens=max_new_tokens, eos_id=eos_id)
