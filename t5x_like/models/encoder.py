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
from t5x_like.layers.common import dense, dropout, dtype_of, param, split_rng
from t5x_like.layers.embeddings import Embed
from t5x_like.layers.norms import Norm
from t5x_like.layers.positions import LearnedPositions, RelativePositionBias
from t5x_like.layers.transformer import Stack
from t5x_like.models import heads, skill
from t5x_like.models.base import LanguageModel, head_flops, side_inputs, stack_flops
from t5x_like.models.losses import chunked_cross_entropy, cross_entropy, scored_cross_entropy


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
    lm = cfg.head == "lm"
    if cfg.head == "classify":
      self.task_head = heads.ClassifierHead(d, cfg.num_labels, std=std, rngs=rngs)
    elif cfg.head == "tag":
      self.task_head = heads.TagHead(d, cfg.num_labels, std=std, rngs=rngs)
    if cfg.nsp:
      self.nsp_head = heads.ClassifierHead(d, 2, std=std, rngs=rngs)
    # A task head replaces the MLM head: a warm start leaves the checkpoint's MLM weights unread.
    if cfg.mlm_head and lm:
      # BERT re-projects the final states before the vocabulary projection; the hidden
      # side of this d x d dense is sharded like an MLP's.
      self.mlm_dense = param(rngs, (d, d), ("embed", "mlp"), std=std)
      self.mlm_dense_bias = param(rngs, (d,), ("mlp",), init="zeros")
      self.mlm_norm = Norm(d, **norm)
      self.output_bias = param(rngs, (cfg.vocab_size,), ("vocab",), init="zeros")
    if not cfg.tie_embeddings and lm:
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
    return self._mlm_transform(self.encode(batch, rng))

  def _mlm_transform(self, x_btd: jax.Array) -> jax.Array:
    cfg = self.cfg
    dt = x_btd.dtype
    if cfg.mlm_head:
      h_btd = dense(x_btd, self.mlm_dense[...].astype(dt))
      h_btd = h_btd + self.mlm_dense_bias[...].astype(dt)
      # BERT's head uses the MLP's activation (hidden_act); gated MLPs fall back to gelu.
      if cfg.mlp_activation == "relu":
        h_btd = jax.nn.relu(h_btd)
      else:
        h_btd = jax.nn.gelu(h_btd, approximate=cfg.gelu_approximate)
      x_btd = self.mlm_norm(h_btd)
    return x_btd

  # ---- task heads (models/heads.py)

  def task_outputs(self, batch: dict, rng: jax.Array | None = None) -> jax.Array:
    """The head's output: classify `[b, num_labels]` logits, tag `[b, t, num_labels]`
    logits, embed `[b, 2, d]` pooled states of segments 1 and 2 (not normalised)."""
    cfg = self.cfg
    r_enc, r_head = split_rng(rng, 2)
    x_btd = self.encode(batch, r_enc)
    _, segments_bt, _ = side_inputs(batch, F.ENCODER)
    if cfg.head == "classify":
      pooled_bd = heads.pool(x_btd, segments_bt, 1, cfg.pooling).astype(x_btd.dtype)
      return self.task_head(dropout(pooled_bd, cfg.dropout_rate, r_head))
    if cfg.head == "tag":
      return self.task_head(dropout(x_btd, cfg.dropout_rate, r_head)).astype(jnp.float32)
    if cfg.head == "embed":
      return jnp.stack([heads.pool(x_btd, segments_bt, s, cfg.pooling) for s in (1, 2)], axis=1)
    raise ValueError(f"model.head={cfg.head!r} has no task outputs")

  @classmethod
  def flops_per_sequence(cls, cfg: ModelConfig, inputs_len: int, targets_len: int = 0,
                         scored: float = 1.0) -> float:
    """With `model.mlm_scored_chunk` the MLM head runs on the scored positions (about 15%)
    only, and so counts them only: the head of BERT's own pretraining, which gathers the
    masked positions, has the same count."""
    if not (cfg.head == "lm" and cfg.mlm_scored_chunk):
      scored = 1.0
    return stack_flops(cfg, cfg.num_layers, inputs_len) + head_flops(cfg, inputs_len * scored)

  def _mlm_loss(self, x_btd: jax.Array, batch: dict) -> tuple[jax.Array, dict]:
    """The MLM cross-entropy sums of the final states: over the scored positions only
    (`model.mlm_scored_chunk`), else over every position (chunked with `model.loss_chunk`)."""
    cfg = self.cfg
    targets_bt, weights_bt = batch[F.ENCODER_TARGET_TOKENS], batch[F.ENCODER_LOSS_WEIGHTS]
    head = lambda h_btd: self.head_logits(self._mlm_transform(h_btd))  # noqa: E731
    if cfg.mlm_scored_chunk:
      return scored_cross_entropy(head, x_btd, targets_bt, weights_bt, cfg.z_loss, cfg.mlm_scored_chunk)
    if cfg.loss_chunk:
      return chunked_cross_entropy(head, x_btd, targets_bt, weights_bt, cfg.z_loss, cfg.loss_chunk)
    return cross_entropy(head(x_btd), targets_bt, weights_bt, cfg.z_loss)

  def loss(self, batch: dict, rng: jax.Array | None = None) -> tuple[jax.Array, dict]:
    cfg = self.cfg
    if cfg.head == "lm" and not cfg.nsp:
      return self._mlm_loss(self.encode(batch, rng), batch)
    _, segments_bt, _ = side_inputs(batch, F.ENCODER)
    valid_b = heads.row_valid(segments_bt)
    if cfg.head == "classify":
      aux = heads.classification_loss(self.task_outputs(batch, rng), batch[F.ENCODER_CLASS_LABELS][:, 0], valid_b)
      return aux["nll_sum"], heads.with_zero_z(aux)
    if cfg.head == "tag":
      return cross_entropy(self.task_outputs(batch, rng), batch[F.ENCODER_TARGET_TOKENS],
                           batch[F.ENCODER_LOSS_WEIGHTS])
    if cfg.head == "embed":
      pooled = self.task_outputs(batch, rng)
      aux = heads.info_nce(pooled[:, 0], pooled[:, 1], valid_b, cfg.contrastive_temperature)
      return aux["nll_sum"], heads.with_zero_z(aux)
    # MLM + NSP (BERT): the loss is mean MLM + mean NSP; `loss` reports the MLM part and
    # nsp_loss / nsp_accuracy the other.
    r_enc, r_head = split_rng(rng, 2)
    x_btd = self.encode(batch, r_enc)
    total, aux = self._mlm_loss(x_btd, batch)
    pooled_bd = heads.pool(x_btd, segments_bt, 1, cfg.pooling).astype(x_btd.dtype)
    nsp = heads.classification_loss(self.nsp_head(dropout(pooled_bd, cfg.dropout_rate, r_head)),
                                    batch[F.ENCODER_CLASS_LABELS][:, 0], valid_b)
    scale = jax.lax.stop_gradient(aux["weight_sum"] / jnp.maximum(nsp["weight_sum"], 1.0))
    aux["extra"] = {"nsp_loss": jnp.stack([nsp["nll_sum"], nsp["weight_sum"]]),
                    "nsp_accuracy": jnp.stack([nsp["correct_sum"], nsp["weight_sum"]])}
    return total + scale * nsp["nll_sum"], aux

  def predict(self, batch: dict, **unused) -> jax.Array:
    """The LM head: the most likely token at every position, `[b, t]` (fills in the
    masked tokens). Task heads: the class `[b]`, the tag of every token `[b, t]`, or the
    L2-normalised embeddings `[b, 2, d]` of segments 1 and 2."""
    if self.cfg.head == "lm":
      return jnp.argmax(self(batch), axis=-1).astype(jnp.int32)
    out = self.task_outputs(batch)
    if self.cfg.head == "embed":
      return out / jnp.maximum(jnp.linalg.norm(out, axis=-1, keepdims=True), 1e-6)
    return jnp.argmax(out, axis=-1).astype(jnp.int32)
