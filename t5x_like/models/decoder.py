"""Decoder-only (GPT-style) language model.

Modern style: RoPE, RMSNorm, SwiGLU, pre-norm, no biases. GPT-2 style: learned positions,
LayerNorm, GELU, biases. Both are the same module with different config fields.
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
from t5x_like.runtime import shard


def default_positions(tokens_bt: jax.Array) -> jax.Array:
  return jnp.broadcast_to(jnp.arange(tokens_bt.shape[1], dtype=jnp.int32), tokens_bt.shape)


class DecoderOnly(LanguageModel):
  target_prefix = "decoder"

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
    cfg = self.cfg
    tokens_bt = batch["decoder_input_tokens"]
    segments_bt = batch.get("decoder_segment_ids")
    if segments_bt is None:
      segments_bt = jnp.ones_like(tokens_bt)
    positions_bt = batch.get("decoder_positions")
    if positions_bt is None:
      positions_bt = default_positions(tokens_bt)
    r_embed, r_stack = split_rng(rng, 2)

    x_btd = self.embed(tokens_bt, dtype_of(cfg.dtype))
    if cfg.position == "learned":
      x_btd = x_btd + self.pos_embed(positions_bt).astype(x_btd.dtype)
    x_btd = shard(dropout(x_btd, cfg.dropout_rate, r_embed), ACTIVATION_AXES)

    mask = attention_mask(segments_bt, segments_bt, causal=True)
    if "decoder_causal_attention" in batch:  # prefix LM: the prefix sees itself bidirectionally
      prefix_bt = batch["decoder_causal_attention"] > 0
      same = segments_bt[:, :, None] == segments_bt[:, None, :]
      mask = mask | (prefix_bt[:, :, None] & prefix_bt[:, None, :] & same)[:, None]
    ctx = {"self_mask": mask, "positions": positions_bt}
    if cfg.position == "relative":
      ctx["self_bias"] = self.rel_bias(positions_bt, positions_bt)
    x_btd = self.stack(x_btd, ctx, r_stack)
    if cfg.norm_position == "pre":
      x_btd = self.final_norm(x_btd)
    if cfg.tie_embeddings:
      logits_btv = self.embed.attend(x_btd)
    else:
      logits_btv = jnp.einsum("btd,dv->btv", x_btd, self.head[...].astype(x_btd.dtype))
    return shard(logits_btv, ("batch", "length", "vocab"))

  def predict(self, batch: dict, *, max_new_tokens: int = 8, eos_id: int = 1) -> jax.Array:
    """Greedy continuation of left-aligned prompts; see t5x_like.decode."""
    from t5x_like.decode import greedy_continue
    return greedy_continue(self, batch["prompt_tokens"], batch["prompt_lengths"],
                           max_new_tokens=max_new_tokens, eos_id=eos_id)
