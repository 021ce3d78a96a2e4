"""Objectives as tf.data preprocessors: tokenized documents -> fixed-shape feature rows.

Each objective takes ragged chunks of documents `[n_docs, (tokens)]` (EOS appended, as the
batched tokenizer yields them) and returns blocks of rows `{feature: [n_rows, ...]}` with
the features of its model family (`t5x_like/features.py`), packed several documents to a
row. Random choices use stateless ops seeded by (data seed, element index), so the rows
are a pure function of the seed and the input order, and a restored iterator continues
the same stream. `OBJECTIVES` at the end lists them by config name.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from t5x_like import features as F  # noqa: E402
from t5x_like.config import SENTINEL_OBJECTIVES, DataConfig, SpanCorruptionConfig  # noqa: E402
from t5x_like.data import spans  # noqa: E402
from t5x_like.data.packing import pack_blocks, pack_greedy  # noqa: E402
from t5x_like.data.tokenizer import Tokenizer  # noqa: E402
from t5x_like.errors import DataError  # noqa: E402

# ---------------------------------------------------------------- causal LM


def causal_lm_features(packed: dict) -> dict:
  """Decoder features of packed rows (or batches of rows): the inputs are the targets
  shifted right by one within each segment, with 0 (pad, doubling as BOS) at each start."""
  tokens, segments, positions = (tf.convert_to_tensor(packed[k])
                                 for k in ("tokens", "segment_ids", "positions"))
  return {
      F.DECODER_TARGET_TOKENS: tokens,
      # A segment starts where the position is 0: there the previous token is another
      # document's (or padding), which the model must not see.
      F.DECODER_INPUT_TOKENS: _shift_right(tokens, positions),
      F.DECODER_SEGMENT_IDS: segments,
      F.DECODER_POSITIONS: positions,
      F.DECODER_LOSS_WEIGHTS: tf.cast(segments > 0, tf.float32),
  }


def causal_lm(chunks: tf.data.Dataset, cfg: DataConfig, *, tokenizer: Tokenizer,
              seed: int) -> tf.data.Dataset:
  """Concatenated documents cut into rows of `seq_len`; every token is a target."""
  del tokenizer, seed
  return pack_blocks(chunks, cfg.seq_len, cfg.cross_document).map(causal_lm_features)


def _shift_right(tokens, positions):
  """Decoder inputs: each segment's tokens shifted right by one behind 0 (BOS)."""
  shifted = tf.concat([tf.zeros_like(tokens[..., :1]), tokens[..., :-1]], axis=-1)
  return tf.where(positions > 0, shifted, tf.zeros_like(shifted))


def _seeds(seed: int, index: tf.Tensor, n: int) -> tf.Tensor:
  """`n` independent stateless seeds `[n, 2]` for the element number `index`."""
  base = tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)])
  return tf.random.split(base, n)


# ---------------------------------------------------------------- sentinels and specials


def sentinel_base(tokenizer: Tokenizer, cfg: DataConfig) -> int:
  """One past the last sentinel: sentinel i is `sentinel_base - 1 - i` (T5's layout)."""
  return tokenizer.vocab_size + cfg.tokenizer.extra_ids


def sentinels(cfg: DataConfig) -> int:
  """How many sentinel ids follow the tokenizer's pieces in the objective's vocabulary."""
  return cfg.tokenizer.extra_ids if cfg.objective in SENTINEL_OBJECTIVES else 0


def vocab_needed(tokenizer: Tokenizer, cfg: DataConfig) -> int:
  """The smallest model vocabulary the objective's ids fit in."""
  return tokenizer.vocab_size + sentinels(cfg)


def mask_id(tokenizer: Tokenizer, cfg: DataConfig) -> int:
  """The MLM mask token: a "<mask>"/"[MASK]" piece of the tokenizer, else sentinel 0."""
  for name in ("<mask>", "[MASK]"):
    i = tokenizer.sp.PieceToId(name)
    if i != tokenizer.unk_id and tokenizer.piece(i) == name:
      return i
  if cfg.tokenizer.extra_ids < 1:
    raise DataError("objective mlm needs a mask token: set data.tokenizer.extra_ids >= 1 (sentinel 0 "
                    "is used) or train the tokenizer with a '<mask>' user-defined symbol")
  return sentinel_base(tokenizer, cfg) - 1


def piece_types(tokenizer: Tokenizer) -> list[int]:
  """The SentencePiece type of every id (NORMAL=1, UNKNOWN=2, CONTROL=3, USER_DEFINED=4,
  UNUSED=5, BYTE=6)."""
  from sentencepiece import sentencepiece_model_pb2

  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString(tokenizer.model_bytes)
  return [piece.type for piece in proto.pieces]


def special_ids(tokenizer: Tokenizer) -> list[int]:
  """Ids never masked: control, unknown, user-defined and unused pieces (pad, EOS, unk,
  "<mask>", ...)."""
  return [i for i, t in enumerate(piece_types(tokenizer)) if t in (2, 3, 4, 5)]


def random_replacement_ids(tokenizer: Tokenizer) -> list[int]:
  """Ids MLM draws its random replacements from: the normal pieces (no bytes, no specials)."""
  return [i for i, t in enumerate(piece_types(tokenizer)) if t == 1]


# ---------------------------------------------------------------- masked LM (BERT)


def mlm_features(packed: dict, index: tf.Tensor, *, seed: int, cfg: DataConfig,
                 vocab_size: int, specials: list[int], regular: list[int],
                 mask_token: int) -> dict:
  """BERT masking of packed rows `[..., L]`: each maskable token is selected with
  probability `mlm.probability`; a selected token becomes the mask token
  (`mlm.mask_rate`), a random regular token (`mlm.random_rate`) or stays (the rest).
  Loss weights are 1 exactly on the selected tokens."""
  m = cfg.mlm
  tokens = tf.convert_to_tensor(packed["tokens"])
  segments, positions = packed["segment_ids"], packed["positions"]
  is_special = tf.scatter_nd(tf.constant(specials, tf.int32)[:, None],
                             tf.ones([len(specials)], tf.bool), [vocab_size])
  regular = tf.constant(regular, tf.int32)
  in_vocab = tokens < vocab_size
  maskable = (segments > 0) & in_vocab & ~tf.gather(
      is_special, tf.where(in_vocab, tokens, tf.zeros_like(tokens)))
  s = _seeds(seed, index, 3)
  shape = tf.shape(tokens)
  selected = maskable & (tf.random.stateless_uniform(shape, s[0]) < m.probability)
  how = tf.random.stateless_uniform(shape, s[1])
  random_tokens = tf.gather(regular, tf.random.stateless_uniform(
      shape, s[2], minval=0, maxval=tf.shape(regular)[0], dtype=tf.int32))
  inputs = tf.where(selected & (how < m.mask_rate), mask_token,
                    tf.where(selected & (how < m.mask_rate + m.random_rate), random_tokens, tokens))
  return {
      F.ENCODER_INPUT_TOKENS: inputs,
      F.ENCODER_TARGET_TOKENS: tokens,
      F.ENCODER_LOSS_WEIGHTS: tf.cast(selected, tf.float32),
      F.ENCODER_SEGMENT_IDS: segments,
      F.ENCODER_POSITIONS: positions,
  }


def mlm(chunks: tf.data.Dataset, cfg: DataConfig, *, tokenizer: Tokenizer,
        seed: int) -> tf.data.Dataset:
  """BERT's masked LM over rows packed like causal LM (the rates are checked by the
  config's validation; the tables are computed once, in Python)."""
  fn = dict(seed=seed, cfg=cfg, vocab_size=tokenizer.vocab_size, specials=special_ids(tokenizer),
            regular=random_replacement_ids(tokenizer), mask_token=mask_id(tokenizer, cfg))
  blocks = pack_blocks(chunks, cfg.seq_len, cfg.cross_document).enumerate()
  return blocks.map(lambda i, block: mlm_features(block, i, **fn))


# ---------------------------------------------------------------- span corruption (T5)


def _random_lengths(total: tf.Tensor, parts: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """`parts` positive integers summing to `total`, uniform over such compositions: cut
  points are a random subset of size parts-1 of 1..total-1."""
  order = tf.argsort(tf.random.stateless_uniform([total - 1], seed))
  cuts = tf.sort(order[:parts - 1] + 1)
  bounds = tf.concat([[0], cuts, [total]], 0)
  return bounds[1:] - bounds[:-1]


def noise_mask(length: tf.Tensor, cfg: SpanCorruptionConfig, seed: tf.Tensor) -> tf.Tensor:
  """Boolean `[length]`, True on noise: round(length * density) noise tokens (at least 1,
  at most length - 1) in round(noise / mean span length) spans (at least 1), alternating
  with as many non-noise spans; the example starts with non-noise and ends with noise."""
  # float64 and round-half-to-even, exactly as `spans.span_lengths` computes them in Python: in
  # float32 e.g. 190 * 0.15 rounds to 29, one noise token more than the row sizes allow for.
  lf = tf.cast(length, tf.float64)
  noise = tf.clip_by_value(tf.cast(tf.round(lf * cfg.noise_density), tf.int32), 1, length - 1)
  n_spans = tf.maximum(tf.cast(tf.round(tf.cast(noise, tf.float64) / cfg.mean_span_length),
                               tf.int32), 1)
  n_spans = tf.minimum(n_spans, tf.minimum(noise, length - noise))
  s = tf.random.split(seed, 2)
  noise_lengths = _random_lengths(noise, n_spans, s[0])
  keep_lengths = _random_lengths(length - noise, n_spans, s[1])
  interleaved = tf.reshape(tf.stack([keep_lengths, noise_lengths], axis=1), [-1])
  is_noise = tf.tile([False, True], [n_spans])
  return tf.repeat(is_noise, interleaved)


def _collapse_spans(tokens: tf.Tensor, span_mask: tf.Tensor, base: int) -> tf.Tensor:
  """Replaces each run of True in `span_mask` by one sentinel (base-1, base-2, ...)."""
  previous = tf.concat([[False], span_mask[:-1]], 0)
  first = span_mask & ~previous
  sentinels = base - tf.cumsum(tf.cast(first, tf.int32))
  out = tf.where(first, sentinels, tokens)
  return tf.boolean_mask(out, ~(span_mask & previous))


def span_corrupt_example(doc: tf.Tensor, index: tf.Tensor, *, seed: int, cfg: DataConfig,
                         base: int, eos: int) -> dict:
  """One raw example (no EOS) -> {"inputs", "targets"}, each ending with EOS."""
  mask = noise_mask(tf.shape(doc)[0], cfg.span_corruption, _seeds(seed, index, 1)[0])
  eos_t = tf.constant([eos], tf.int32)
  return {"inputs": tf.concat([_collapse_spans(doc, mask, base), eos_t], 0),
          "targets": tf.concat([_collapse_spans(doc, ~mask, base), eos_t], 0)}


def encdec_features(packed: dict) -> dict:
  """Encoder-decoder features of rows packed from {"inputs", "targets"}."""
  targets, positions = packed["targets"], packed["targets_positions"]
  return {
      F.ENCODER_INPUT_TOKENS: packed["inputs"],
      F.ENCODER_SEGMENT_IDS: packed["inputs_segment_ids"],
      F.ENCODER_POSITIONS: packed["inputs_positions"],
      F.DECODER_TARGET_TOKENS: targets,
      F.DECODER_INPUT_TOKENS: _shift_right(targets, positions),
      F.DECODER_SEGMENT_IDS: packed["targets_segment_ids"],
      F.DECODER_POSITIONS: positions,
      F.DECODER_LOSS_WEIGHTS: tf.cast(packed["targets_segment_ids"] > 0, tf.float32),
  }


def span_corruption(chunks: tf.data.Dataset, cfg: DataConfig, *, tokenizer: Tokenizer,
                    seed: int) -> tf.data.Dataset:
  """T5 span corruption. As in T5's pretraining recipe the documents are concatenated
  (each keeps its EOS, which marks the boundary) and cut into pieces of `span_raw_len`
  tokens, so every example fills its row (documents share a row's attention, as in T5).
  In each piece, noise spans are replaced by sentinels in the inputs and the targets list
  each span behind its sentinel; the examples (short ones at the end of a finite stream
  too) are packed greedily into rows of `seq_len` inputs and `targets_len` targets. The
  noise settings and sentinel count are checked by the config's validation."""
  blocks = pack_blocks(chunks, spans.span_raw_len(cfg))
  pieces = blocks.map(lambda b: tf.ragged.boolean_mask(b["tokens"], b["segment_ids"] > 0)).unbatch()
  base, eos = sentinel_base(tokenizer, cfg), tokenizer.eos_id
  examples = pieces.filter(lambda d: tf.shape(d)[0] >= 2).enumerate()
  corrupted = examples.map(lambda i, d: span_corrupt_example(d, i, seed=seed, cfg=cfg,
                                                             base=base, eos=eos),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  packed = pack_greedy(corrupted, {"inputs": cfg.seq_len, "targets": spans.span_targets_len(cfg)})
  return packed.map(encdec_features).batch(64)  # blocks of rows, as every objective yields


# ---------------------------------------------------------------- prefix LM


def prefix_lm_features(packed: dict) -> dict:
  """Decoder features with a bidirectional prefix: loss on the suffix only, and
  `decoder_causal_attention` on the positions whose input token is in the prefix (the
  segment's first position, BOS, included)."""
  tokens, positions, segments = packed["tokens"], packed["tokens_positions"], packed["tokens_segment_ids"]
  in_prefix = packed["prefix"] > 0
  input_in_prefix = tf.where(positions > 0, tf.concat([[True], in_prefix[:-1]], 0), True)
  return {
      F.DECODER_TARGET_TOKENS: tokens,
      F.DECODER_INPUT_TOKENS: _shift_right(tokens, positions),
      F.DECODER_SEGMENT_IDS: segments,
      F.DECODER_POSITIONS: positions,
      F.DECODER_LOSS_WEIGHTS: tf.cast((segments > 0) & ~in_prefix, tf.float32),
      F.DECODER_CAUSAL_ATTENTION: tf.cast((segments > 0) & input_in_prefix, tf.int32),
  }


def prefix_lm(chunks: tf.data.Dataset, cfg: DataConfig, *, tokenizer: Tokenizer,
              seed: int) -> tf.data.Dataset:
  """Prefix LM for decoder-only models, laid out as T5's prefix-LM task: the documents are
  concatenated (each keeps its EOS) and cut into rows of `seq_len` tokens, so rows are
  full whatever the document lengths; each row is split at a uniform point in 1..n-1 into
  a prefix, read bidirectionally and not scored, and a suffix predicted causally."""
  del tokenizer

  def split(i, row):
    tokens = tf.boolean_mask(row["tokens"], row["segment_ids"] > 0)
    n = tf.shape(tokens)[0]
    k = tf.random.stateless_uniform([], _seeds(seed, i, 1)[0], minval=1, maxval=n,
                                    dtype=tf.int32)
    return {"tokens": tokens, "prefix": tf.cast(tf.range(n) < k, tf.int32)}

  rows = pack_blocks(chunks, cfg.seq_len).unbatch()
  examples = rows.filter(lambda r: tf.reduce_sum(tf.cast(r["segment_ids"] > 0, tf.int32)) >= 2).enumerate().map(split)
  # One example per row (the last, shorter one too): pack_greedy only adds the features.
  packed = pack_greedy(examples, {"tokens": cfg.seq_len, "prefix": cfg.seq_len})
  return packed.map(prefix_lm_features).batch(64)


# Every objective: fn(chunks, data_cfg, *, tokenizer, seed) -> blocks {feature: [n, ...]},
# where `chunks` are ragged `[n_docs, (tokens)]` of documents with EOS appended. Blocks save
# one dataset element per document and per row, about a third of the pipeline's time.
OBJECTIVES = {"causal_lm": causal_lm, "prefix_lm": prefix_lm, "mlm": mlm,
              "span_corruption": span_corruption}


def objective(name: str):
  """The preprocessor of `data.objective=name` (the sentence-pair ones live in their own file)."""
  if name in OBJECTIVES:
    return OBJECTIVES[name]
  from t5x_like.data import sentence_pairs

  return {"mlm_nsp": sentence_pairs.mlm_nsp, "contrastive": sentence_pairs.contrastive}[name]

__all__ = ["OBJECTIVES", "objective", "SENTINEL_OBJECTIVES", "causal_lm", "causal_lm_features",
           "encdec_features", "mask_id", "mlm", "mlm_features", "noise_mask", "piece_types",
           "prefix_lm", "prefix_lm_features", "random_replacement_ids", "sentinel_base", "sentinels",
           "span_corrupt_example", "span_corruption", "special_ids", "vocab_needed"]
