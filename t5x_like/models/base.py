"""The protocol every model family implements, so the trainer, evaluator and decoder never
branch on the family:

- `contract`: the batch it reads (`t5x_like/features.py`);
- `loss`, `score`, `predict`: training loss (token sums), per-row log-likelihood, decoding;
- `prefill`, `extend` (families that generate): the KV-cached steps that
  `t5x_like/decoding/` searches with;
- `flops_per_sequence`: the MFU numerator for its rows;
- `skill`: its score on the built-in corpus (`models/skill.py`);
- `eval_variants`: extra eval passes that diagnose the family (batch transforms by name).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from t5x_like import features
from t5x_like.config import ModelConfig
from t5x_like.layers.attention import attention_mask
from t5x_like.layers.common import dense, dropout, dtype_of
from t5x_like.layers.transformer import ACTIVATION_AXES
from t5x_like.models.losses import chunked_cross_entropy, cross_entropy
from t5x_like.runtime import shard


def default_positions(tokens_bt: jax.Array) -> jax.Array:
  return jnp.broadcast_to(jnp.arange(tokens_bt.shape[1], dtype=jnp.int32), tokens_bt.shape)


def side_inputs(batch: dict, side: features.Side) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(tokens, segment ids, positions) of one side; a batch without segment ids or positions
  holds one sequence per row. Encoder inputs pad with 0; decoder inputs start with 0 (BOS),
  so there 0 is no padding."""
  tokens_bt = batch[side.input_tokens]
  segments_bt = batch.get(side.segment_ids)
  if segments_bt is None:
    segments_bt = ((tokens_bt != 0).astype(jnp.int32) if side is features.ENCODER
                   else jnp.ones_like(tokens_bt))
  positions_bt = batch.get(side.positions)
  if positions_bt is None:
    positions_bt = default_positions(tokens_bt)
  return tokens_bt, segments_bt, positions_bt


# ---------------------------------------------------------------- FLOPs


def _dims(cfg: ModelConfig) -> tuple[int, int, int]:
  hd = cfg.head_dim or cfg.d_model // cfg.num_heads
  return cfg.num_heads, cfg.num_kv_heads or cfg.num_heads, hd


def projection_params(cfg: ModelConfig) -> tuple[int, int]:
  """Matmul parameters of (query + output, key + value) projections of one attention."""
  h, kv, hd = _dims(cfg)
  return 2 * cfg.d_model * h * hd, 2 * cfg.d_model * kv * hd


def stack_flops(cfg: ModelConfig, layers: int, n: int) -> float:
  """Training FLOPs of a self-attention stack over `n` tokens: 6 x matmul parameters x
  tokens, plus 12 x heads x head_dim x n^2 for the scores and values (Kaplan et al. 2020;
  PaLM appendix B, causal masks not halved)."""
  h, _, hd = _dims(cfg)
  q_o, k_v = projection_params(cfg)
  mlp = cfg.d_model * cfg.d_ff * (3 if cfg.mlp_activation in ("swiglu", "gated_gelu") else 2)
  return layers * (6.0 * (q_o + k_v + mlp) * n + 12.0 * h * hd * n * n)


def head_flops(cfg: ModelConfig, n: int) -> float:
  """Training FLOPs of the output projection (and BERT's MLM dense) over `n` tokens."""
  return 6.0 * (cfg.d_model * cfg.vocab_size + (cfg.d_model ** 2 if cfg.mlm_head else 0)) * n


# ---------------------------------------------------------------- the protocol


class LanguageModel(nnx.Module):
  """Base class; a family sets `contract` and `skill`, and implements `features` (the
  hidden states its output projection reads); `__call__` -> logits is the two together."""

  contract: features.Contract
  # skill(cfg, predict, tokenizer, examples) -> {"skill_accuracy", ...}; see models/skill.py.
  skill: Callable

  def __init__(self, cfg: ModelConfig):
    self.cfg = cfg

  def features(self, batch: dict, rng: jax.Array | None = None) -> jax.Array:
    """The target side's final states `[b, t, d]`, ready for `head_logits`."""
    raise NotImplementedError

  def __call__(self, batch: dict, rng: jax.Array | None = None) -> jax.Array:
    return self.head_logits(self.features(batch, rng))

  def loss(self, batch: dict, rng: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """Token sums of the cross-entropy; with `model.loss_chunk` the head runs over chunks
    of the length axis, so the whole `[b, t, vocab]` logits never exist at once."""
    side = self.contract.target_side
    targets_bt, weights_bt = batch[side.target_tokens], batch[side.loss_weights]
    if self.cfg.loss_chunk:
      return chunked_cross_entropy(self.head_logits, self.features(batch, rng), targets_bt,
                                   weights_bt, self.cfg.z_loss, self.cfg.loss_chunk)
    return cross_entropy(self(batch, rng), targets_bt, weights_bt, self.cfg.z_loss)

  def score(self, batch: dict) -> jax.Array:
    """Log-likelihood of each row's weighted targets, `[batch]` (rows hold one sequence)."""
    logits = self(batch).astype(jnp.float32)
    side = self.contract.target_side
    logp = jax.nn.log_softmax(logits, axis=-1)
    tok_bt = jnp.take_along_axis(logp, batch[side.target_tokens][..., None], axis=-1)[..., 0]
    return jnp.sum(tok_bt * batch[side.loss_weights], axis=-1)

  def predict(self, batch: dict, *, max_new_tokens: int = 8, eos_id: int = 1) -> jax.Array:
    """Greedy generation, `[b, max_new_tokens]` (tokens after an EOS are 0), on the cached
    path of `t5x_like/decoding/`. Decoder-only rows continue left-aligned prompts
    (`prompt_tokens`, `prompt_lengths`) after the BOS stand-in 0; encoder-decoder rows
    decode from their encoder input. Families that do not generate override this."""
    from t5x_like.decoding.generate import DecodeOptions, generate
    return generate(self, batch, DecodeOptions(max_new_tokens=max_new_tokens, eos_id=eos_id)).tokens

  # ---- generation: a family that generates sets `generates` and implements these two

  generates = False
  # The decoder's first input for checkpoints converted from Hugging Face, where it may
  # differ from ours (0): None means the prompt ids are the model's input as given.
  imported_bos_id: int | None = 0

  def prefill(self, batch: dict, *, max_new_tokens: int, bos_id: int | None = 0,
              cached: bool = True):
    """Reads the prompt (or encoder input) of each row and returns (logits `[b, vocab]`
    of the first new token, a `decoding.state.DecodeState` with room for
    `max_new_tokens`). `cached=False` gives the uncached reference, whose every step
    re-runs the model over a fixed buffer."""
    raise NotImplementedError(f"{type(self).__name__} does not generate")

  def extend(self, state, tokens_b: jax.Array):
    """Feeds one token per row; returns (logits `[b, vocab]` of the next one, the state)."""
    raise NotImplementedError(f"{type(self).__name__} does not generate")

  def check_decode_length(self, length: int) -> None:
    """Learned positions end at `max_len`: a longer generation would read past the table."""
    if self.cfg.position == "learned" and length > self.cfg.max_len:
      from t5x_like.errors import ConfigError
      raise ConfigError(f"decoding needs positions up to {length - 1} but the model's learned position "
                        f"table has {self.cfg.max_len}; shorten the prompt or max_new_tokens")

  def cache_mask(self, positions_bt: jax.Array, length: int) -> jax.Array:
    """The self-attention mask of queries at `positions_bt` over a cache of `length`
    slots (slot j holds position j), from the one mask function training uses."""
    k_index_bs = jnp.arange(length, dtype=jnp.int32)[None, :]
    return attention_mask(jnp.ones_like(positions_bt), jnp.ones_like(k_index_bs), causal=True,
                          sliding_window=self.cfg.sliding_window, q_index_bt=positions_bt,
                          k_index_bs=k_index_bs)

  def extend_stack(self, stack, x_btd, ctx: dict, rel_bias, final_norm, cache: dict):
    """`run_stack` for new tokens against `cache` (`Stack.extend`); ctx["positions"] are
    the new tokens' positions, which are also their cache slots."""
    if self.cfg.position == "relative":
      ctx["self_bias"] = rel_bias(ctx["positions"], jnp.arange(cache["k"].shape[2], dtype=jnp.int32)[None])
    x_btd, cache = stack.extend(x_btd, ctx, cache)
    return (final_norm(x_btd) if self.cfg.norm_position == "pre" else x_btd), cache

  # Steps every family shares; the modules they use (`embed`, `head`, norms, stacks) are
  # the family's own attributes, so parameter names stay as each family defines them.

  def embed_inputs(self, tokens_bt, positions_bt, pos_embed, rng, extra_btd=None, norm=None):
    """Token embeddings (+ `extra_btd`, + learned positions, then `norm`), with dropout."""
    x_btd = self.embed(tokens_bt, dtype_of(self.cfg.dtype))
    if extra_btd is not None:
      x_btd = x_btd + extra_btd
    if pos_embed is not None:
      x_btd = x_btd + pos_embed(positions_bt).astype(x_btd.dtype)
    if norm is not None:
      x_btd = norm(x_btd)
    return shard(dropout(x_btd, self.cfg.dropout_rate, rng), ACTIVATION_AXES)

  def run_stack(self, stack, x_btd, ctx: dict, rel_bias, final_norm, rng):
    """A stack over `x_btd` with its relative position bias (if any) and final pre-norm."""
    if self.cfg.position == "relative":
      ctx["self_bias"] = rel_bias(ctx["positions"], ctx["positions"])
    x_btd = stack(x_btd, ctx, rng)
    return final_norm(x_btd) if self.cfg.norm_position == "pre" else x_btd

  def head_logits(self, x_btd) -> jax.Array:
    """The output projection: the tied embedding table or the untied `head`, plus the
    family's `output_bias` if it has one (BERT)."""
    bias = getattr(self, "output_bias", None)
    if self.cfg.tie_embeddings:
      logits_btv = self.embed.attend(x_btd)
    else:
      logits_btv = dense(x_btd, self.head[...].astype(x_btd.dtype))
    if bias is not None:
      logits_btv = logits_btv + bias[...].astype(x_btd.dtype)
    return shard(logits_btv, ("batch", "length", "vocab"))

  @classmethod
  def flops_per_sequence(cls, cfg: ModelConfig, inputs_len: int, targets_len: int = 0,
                         scored: float = 1.0) -> float:
    """Training FLOPs (forward + backward) of one row: a single stack and the head over
    `inputs_len` tokens. Embedding lookups, norms and biases are left out. `scored`: the
    share of positions the loss scores, for a family whose head runs on those only (the
    encoder's MLM, `model.mlm_scored_chunk`); the others ignore it."""
    return stack_flops(cfg, cfg.num_layers, inputs_len) + head_flops(cfg, inputs_len)

  @classmethod
  def eval_variants(cls) -> dict[str, Callable[[dict], dict]]:
    """Extra eval passes, {metric name: numpy batch transform}; the loss of each is
    reported under its name."""
    return {}
