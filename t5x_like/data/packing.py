"""Packing tokenized examples into fixed-length rows with segment ids and positions.

- `pack_and_split` (causal LM): documents are concatenated and cut into rows of `seq_len`;
  no token is dropped, and a document crossing a row boundary continues in the next row
  as a new segment.
- `pack_greedy` (multi-feature examples such as inputs/targets): whole examples are placed
  in order into rows; a new row starts when any feature would overflow.

Both run inside `Dataset.scan`, so the iterator state (including the tokens carried over
to the next row) is saved by `tf.train.Checkpoint(iterator=it)`. The causal-LM packer
works on chunks of many documents with vectorised ops (`pack_blocks`): a dataset element
per token, or even per document, would cost more than the tokenizer itself.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

try:  # TensorFlow must never take the accelerators JAX uses.
  tf.config.set_visible_devices([], "GPU")
except (RuntimeError, ValueError):  # devices already initialised: nothing left to hide
  pass

DOCS_PER_CHUNK = 256  # documents concatenated per scan step in `pack_and_split`


# ---------------------------------------------------------------- causal LM: concatenate and split


def segments_and_positions(starts_nl: tf.Tensor,
                           valid_nl: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Segment ids (1.. per row, 0 on padding) and positions from document-start flags.

  `starts_nl` is True at the first token of each document; column 0 of every row starts a
  segment too, since a document continued from the previous row is a new segment here.
  """
  n, seq_len = tf.shape(starts_nl)[0], tf.shape(starts_nl)[1]
  starts_nl = tf.concat([tf.ones([n, 1], tf.bool), starts_nl[:, 1:]], axis=1)
  starts_flat = tf.reshape(starts_nl, [-1])
  # Index of the segment each token belongs to, counted over the whole chunk in row order.
  seg_flat = tf.cumsum(tf.cast(starts_flat, tf.int32)) - 1
  cols_flat = tf.tile(tf.range(seq_len), [n])
  first_col = tf.boolean_mask(cols_flat, starts_flat)  # column where each segment begins
  positions_nl = tf.reshape(cols_flat - tf.gather(first_col, seg_flat), [n, seq_len])
  segments_nl = tf.cumsum(tf.cast(starts_nl, tf.int32), axis=1)
  valid = tf.cast(valid_nl, tf.int32)
  return segments_nl * valid, positions_nl * valid


def _doc_start_flags(docs: tf.RaggedTensor) -> tf.Tensor:
  """True at the first token of every document of a ragged chunk, flattened."""
  lengths = docs.row_lengths()
  starts = tf.boolean_mask(tf.cumsum(lengths, exclusive=True), lengths > 0)
  total = tf.reduce_sum(lengths)
  return tf.scatter_nd(starts[:, None], tf.ones_like(starts, tf.bool), total[None])


MAX_SLICE_TOKENS = 1 << 20


def _slices(tokens: tf.Tensor, starts: tf.Tensor, is_last) -> tf.data.Dataset:
  n = (tf.shape(tokens, out_type=tf.int64)[0] + MAX_SLICE_TOKENS - 1) // MAX_SLICE_TOKENS
  return tf.data.Dataset.range(tf.maximum(n, 1)).map(
      lambda i: (tokens[i * MAX_SLICE_TOKENS:(i + 1) * MAX_SLICE_TOKENS],
                 starts[i * MAX_SLICE_TOKENS:(i + 1) * MAX_SLICE_TOKENS], is_last))


def pack_blocks(chunks: tf.data.Dataset, seq_len: int, cross_document: bool = False) -> tf.data.Dataset:
  """Packs ragged chunks `[n_docs, (tokens)]` of documents (e.g. straight from a batched
  tokenizer) into blocks of whole rows: `{"tokens", "segment_ids", "positions"}`, each
  `[n_rows, seq_len]` with `n_rows` varying per block (0 included). `Dataset.rebatch`
  turns blocks into batches in one copy. `cross_document`: each row is one segment
  (positions 0..seq_len-1) whatever documents it holds, as GPT-2 trains."""
  dtype = chunks.element_spec.dtype
  marked = chunks.map(lambda rt: (rt.flat_values, _doc_start_flags(rt), False))
  # A chunk holding a very long document is packed a slice at a time (the carry joins the
  # slices), so memory follows MAX_SLICE_TOKENS rather than the document's length.
  marked = marked.flat_map(_slices)
  # A final marker flushes the carried tokens as a padded row; an infinite input never ends.
  flush = tf.data.Dataset.from_tensors((tf.zeros([0], dtype), tf.zeros([0], tf.bool), True))
  marked = marked.concatenate(flush)

  def step(carry, chunk):
    carry_tok, carry_start = carry
    tok, start, is_last = chunk
    tok = tf.concat([carry_tok, tok], 0)
    start = tf.concat([carry_start, start], 0)
    total = tf.shape(tok)[0]
    pad = tf.where(is_last, -total % seq_len, 0)
    valid = tf.concat([tf.ones([total], tf.bool), tf.zeros([pad], tf.bool)], 0)
    tok = tf.concat([tok, tf.zeros([pad], dtype)], 0)
    start = tf.concat([start, tf.zeros([pad], tf.bool)], 0)
    used = (tf.shape(tok)[0] // seq_len) * seq_len
    rows = tuple(tf.reshape(x[:used], [-1, seq_len]) for x in (tok, start, valid))
    return (tok[used:], start[used:]), rows

  init = (tf.zeros([0], dtype), tf.zeros([0], tf.bool))

  def features(tokens_nl, starts_nl, valid_nl):
    if cross_document:  # the EOS each document ends with is the only boundary
      valid = tf.cast(valid_nl, tf.int32)
      segments_nl, positions_nl = valid, tf.range(seq_len)[None, :] * valid
    else:
      segments_nl, positions_nl = segments_and_positions(starts_nl, valid_nl)
    return {"tokens": tokens_nl, "segment_ids": segments_nl, "positions": positions_nl}

  return marked.scan(init, step).map(features)


def pack_and_split(ds: tf.data.Dataset, seq_len: int) -> tf.data.Dataset:
  """Packs documents into rows for causal language modelling.

  `ds` yields 1-D int32 token tensors, one document each with EOS appended. The result
  yields `{"tokens", "segment_ids", "positions"}`, each `[seq_len]` int32: segments are
  numbered 1.. within the row and positions restart at 0 for each segment. Every input
  token appears exactly once, in order; a finite input ends with one zero-padded row
  (segment 0), an empty document contributes nothing.
  """
  return pack_blocks(ds.ragged_batch(DOCS_PER_CHUNK), seq_len).unbatch()


# ---------------------------------------------------------------- multi-feature: greedy by example


def pack_greedy(ds: tf.data.Dataset, seq_lens: dict[str, int]) -> tf.data.Dataset:
  """Packs whole examples `{k: [n_k]}` into rows `{k: [seq_lens[k]]}` in order.

  A new row starts when any feature of the next example would overflow its row. Output
  has `k`, `k_segment_ids` and `k_positions` for every feature; the segment number of an
  example is the same in all features. Features longer than their row are truncated
  (callers normally truncate before). Padding is 0 with segment 0.
  """
  keys = sorted(seq_lens)
  specs = ds.element_spec
  missing = [k for k in keys if k not in specs]
  if missing:
    raise ValueError(f"pack_greedy: examples lack features {missing}; they have {sorted(specs)}")

  def truncate(ex):
    return {k: ex[k][:seq_lens[k]] for k in keys}

  def nonempty(ex):  # an example with no tokens at all would take a segment number for nothing
    return tf.reduce_any(tf.stack([tf.size(ex[k]) > 0 for k in keys]))

  empty = {k: tf.zeros([0], specs[k].dtype) for k in keys}
  marked = ds.map(truncate).filter(nonempty).map(lambda ex: (ex, False))
  marked = marked.concatenate(tf.data.Dataset.from_tensors((empty, True)))

  def blank_row():
    row = {}
    for k in keys:
      row[k] = tf.zeros([seq_lens[k]], specs[k].dtype)
      row[f"{k}_segment_ids"] = tf.zeros([seq_lens[k]], tf.int32)
      row[f"{k}_positions"] = tf.zeros([seq_lens[k]], tf.int32)
    return row

  def place(row, fill, ex, segment):
    """Writes `ex` into `row` at the offsets `fill`, as segment number `segment`."""
    row = dict(row)
    for k in keys:
      n = tf.shape(ex[k])[0]
      idx = (fill[k] + tf.range(n))[:, None]
      row[k] = tf.tensor_scatter_nd_update(row[k], idx, ex[k])
      row[f"{k}_segment_ids"] = tf.tensor_scatter_nd_update(
          row[f"{k}_segment_ids"], idx, tf.fill([n], segment))
      row[f"{k}_positions"] = tf.tensor_scatter_nd_update(row[f"{k}_positions"], idx, tf.range(n))
    return row

  def step(state, element):
    row, fill, n_segments = state
    ex, is_last = element
    lengths = {k: tf.shape(ex[k])[0] for k in keys}
    overflow = tf.reduce_any(tf.stack([fill[k] + lengths[k] > seq_lens[k] for k in keys]))
    # Emit the current row when the example does not fit, or at the end if it holds anything.
    emit = tf.logical_and(n_segments > 0, tf.logical_or(overflow, is_last))
    start_new = tf.logical_or(overflow, is_last)
    base = tf.nest.map_structure(lambda b, r: tf.where(start_new, b, r), blank_row(), row)
    base_fill = {k: tf.where(start_new, 0, fill[k]) for k in keys}
    base_segments = tf.where(start_new, 0, n_segments)
    new_row = place(base, base_fill, ex, base_segments + 1)
    new_fill = {k: base_fill[k] + lengths[k] for k in keys}
    return (new_row, new_fill, base_segments + 1), (row, emit)

  init = (blank_row(), {k: tf.constant(0) for k in keys}, tf.constant(0))
  def emitted(row, emit):
    del row
    return emit

  def row_only(row, emit):
    del emit
    return row

  return marked.scan(init, step).filter(emitted).map(row_only)


__all__ = ["DOCS_PER_CHUNK", "pack_and_split", "pack_blocks", "pack_greedy",
           "segments_and_positions"]
