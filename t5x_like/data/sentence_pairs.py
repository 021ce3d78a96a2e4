"""Pretraining objectives over pairs of text for the encoder family, as tf.data
preprocessors like `objectives.py` (ragged chunks of documents in, blocks of rows out, all
random choices stateless and seeded by (data seed, block index)):

- `mlm_nsp`, BERT's masked LM with next-sentence prediction (Devlin et al. 2019): each
  document of two or more tokens is cut at a uniform point into A and its continuation B;
  with probability `data.nsp.probability_random` B is replaced by another document of the
  same block: its beginning (`data.nsp.random_from=start`, the default: BERT's random
  segment starts a sentence of another document) or its continuation after a cut of its
  own (`cut`: only the meeting point tells the two apart, which a tiny model did not learn
  in 500 steps on the built-in corpus, whose sentences are independent of each other).
  The row is A EOS B EOS with token types 0 / 1 and the label 0 (B follows A) or 1 (B is
  another document's), BERT's numbering. When the pair is longer than the row, A keeps its
  end and B its start, where the two meet. MLM masking then applies to the row as in
  `objectives.mlm`. Cutting anywhere (BERT cuts between sentences) needs no sentence
  splitter and works for any corpus.
- `contrastive`, SimCSE's unsupervised objective (Gao et al. 2021): each document (its
  first half-row of tokens) appears twice in one row, as segments 1 and 2; the encoder
  attends within each segment and dropout makes the two views differ, so each is the
  other's positive and the rest of the batch the negatives (`models/heads.py:info_nce`).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from t5x_like import features as F  # noqa: E402
from t5x_like.config import DataConfig  # noqa: E402
from t5x_like.data import objectives  # noqa: E402
from t5x_like.data.tokenizer import Tokenizer  # noqa: E402


def _eos_column(m, eos: int) -> tf.RaggedTensor:
  return tf.RaggedTensor.from_tensor(tf.fill([m, 1], tf.constant(eos, tf.int32)))


def _dense(ragged: tf.RaggedTensor, length: int) -> tf.Tensor:
  return ragged.to_tensor(default_value=0, shape=[None, length])


def nsp_pairs(docs: tf.RaggedTensor, index: tf.Tensor, *, seed: int, seq_len: int, eos: int,
              probability_random: float, random_from: str = "start") -> dict:
  """Rows of sentence pairs `{tokens, segment_ids, positions, types, labels}` from one
  block of documents `[m, (tokens)]` (EOS last in each)."""
  body = docs[:, :-1]
  body = tf.ragged.boolean_mask(body, body.row_lengths() >= 2)
  n = tf.cast(body.row_lengths(), tf.int64)
  m = tf.cast(body.nrows(), tf.int64)
  s = objectives._seeds(seed, index, 3)
  u = tf.random.stateless_uniform([m], s[0], dtype=tf.float64)
  cut = 1 + tf.cast(tf.floor(u * tf.cast(n - 1, tf.float64)), tf.int64)  # uniform in 1..n-1
  rows = tf.range(m, dtype=tf.int64)
  is_random = tf.random.stateless_uniform([m], s[1]) < probability_random
  offset = tf.random.stateless_uniform([m], s[2], minval=1, maxval=tf.maximum(m, 2), dtype=tf.int64)
  partner = tf.where(is_random, (rows + offset) % tf.maximum(m, 1), rows)
  labels = tf.cast(partner != rows, tf.int32)  # a block of one document can only pair it with itself
  starts = tf.cast(body.row_starts(), tf.int64)
  b_start, b_len = tf.gather(starts + cut, partner), tf.gather(n - cut, partner)
  if random_from == "start":  # another document's beginning, as BERT's random segments start a sentence
    other = partner != rows
    b_start = tf.where(other, tf.gather(starts, partner), b_start)
    b_len = tf.where(other, tf.gather(n, partner), b_len)
  budget = tf.constant(seq_len - 2, tf.int64)
  a_len = tf.minimum(cut, tf.maximum(budget // 2, budget - b_len))
  b_len = tf.minimum(b_len, budget - a_len)
  flat = body.flat_values
  a = tf.gather(flat, tf.ragged.range(starts + cut - a_len, starts + cut))
  b = tf.gather(flat, tf.ragged.range(b_start, b_start + b_len))
  eos_col = _eos_column(body.nrows(), eos)
  tokens = tf.concat([a, eos_col, b, eos_col], axis=1)
  types = tf.concat([tf.zeros_like(a), tf.zeros_like(eos_col), tf.ones_like(b), tf.ones_like(eos_col)], axis=1)
  positions = tf.ragged.range(tf.cast(tokens.row_lengths(), tf.int32))
  return {"tokens": _dense(tokens, seq_len), "segment_ids": _dense(tf.ones_like(tokens), seq_len),
          "positions": _dense(positions, seq_len), "types": _dense(types, seq_len), "labels": labels[:, None]}


def mlm_nsp(chunks: tf.data.Dataset, cfg: DataConfig, *, tokenizer: Tokenizer, seed: int) -> tf.data.Dataset:
  mlm_args = dict(seed=seed, cfg=cfg, vocab_size=tokenizer.vocab_size, specials=objectives.special_ids(tokenizer),
                  regular=objectives.random_replacement_ids(tokenizer),
                  mask_token=objectives.mask_id(tokenizer, cfg))

  def block(i, docs):
    pairs = nsp_pairs(docs, i, seed=seed + 7, seq_len=cfg.seq_len, eos=tokenizer.eos_id,
                      probability_random=cfg.nsp.probability_random, random_from=cfg.nsp.random_from)
    out = objectives.mlm_features(pairs, i, **mlm_args)
    out[F.ENCODER_TOKEN_TYPE_IDS] = pairs["types"]
    out[F.ENCODER_CLASS_LABELS] = pairs["labels"]
    return out

  return chunks.enumerate().map(block)


def simcse_rows(docs: tf.RaggedTensor, *, seq_len: int, eos: int) -> dict:
  """Each document's first `seq_len // 2 - 1` tokens and EOS, twice: segments 1 and 2."""
  m = docs.nrows()
  a = tf.concat([docs[:, :-1][:, :seq_len // 2 - 1], _eos_column(m, eos)], axis=1)
  tokens = tf.concat([a, a], axis=1)
  segments = tf.concat([tf.ones_like(a), 2 * tf.ones_like(a)], axis=1)
  pos = tf.ragged.range(tf.cast(a.row_lengths(), tf.int32))
  dense = _dense(tokens, seq_len)
  return {F.ENCODER_INPUT_TOKENS: dense, F.ENCODER_TARGET_TOKENS: dense,
          F.ENCODER_SEGMENT_IDS: _dense(segments, seq_len),
          F.ENCODER_POSITIONS: _dense(tf.concat([pos, pos], axis=1), seq_len),
          F.ENCODER_LOSS_WEIGHTS: tf.zeros([m, seq_len], tf.float32)}


def contrastive(chunks: tf.data.Dataset, cfg: DataConfig, *, tokenizer: Tokenizer, seed: int) -> tf.data.Dataset:
  del seed
  return chunks.map(lambda docs: simcse_rows(docs, seq_len=cfg.seq_len, eos=tokenizer.eos_id))


__all__ = ["contrastive", "mlm_nsp", "nsp_pairs", "simcse_rows"]
