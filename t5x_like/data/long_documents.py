"""Documents longer than LONG_DOC_BYTES: where the pipeline's cost per document turns into
cost per byte.

- Tokenizing. SentencePiece's in-graph op needs about 100 bytes of memory per input byte
  of one string (5.8 GB for a 50 MB line), so a long document is tokenized in `pieces` of
  about 1,000 characters cut after whitespace (within 200 characters, else mid-word), and
  its pieces' ids joined again: those of the whole document, since no piece starts with
  whitespace, with the memory of 1,000-character strings.
- Training. The shuffle buffer counts documents (`data.shuffle_buffer`, 10,000 by
  default): 64 copies of one 48 MB line filled 3 GB of it, and a corpus of books would fill
  gigabytes. And a whole 50 MB document gives its rows one after another, thousands of
  batches from one text. So training streams `cut` each long document, before the shuffle
  buffer, into documents of about LONG_DOC_BYTES (16,000 tokens or so, several rows at any
  seq_len we train), joined from the same whitespace-cut pieces; the buffer then holds at
  most `data.shuffle_buffer_mib` of them (`readers/base.py:shuffle_size`). It is done on the blocks
  the readers already check (`readers/files.py`, `readers/tfds.py`), so it costs nothing
  per document. Evaluation reads each document whole.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

LONG_DOC_BYTES = 1 << 16
PIECE_CHARS = 1000  # RE2 repeats at most 1,000 times: the longest piece one pattern can cut
PER = LONG_DOC_BYTES // PIECE_CHARS  # pieces joined into one training document
_PIECE = rf"([^\x00]{{{PIECE_CHARS}}}(?:\S{{0,200}}\s)?)"


def pieces(docs: tf.Tensor) -> tf.RaggedTensor:
  """`[n, (pieces)]`: each document of the 1-D `docs` cut after whitespace every 1,000 or
  so characters; a document's pieces joined are the document."""
  return tf.strings.split(tf.strings.regex_replace(docs, _PIECE, "\\1\x00"), "\x00")


def cut(block: tf.Tensor) -> tf.Tensor:
  """The 1-D `block` of documents with each one longer than LONG_DOC_BYTES replaced, in
  place, by documents of about LONG_DOC_BYTES cut at whitespace (the last one shorter).
  Vectorised over the block: a block without long documents costs one comparison."""
  def split():
    small = pieces(block)  # [doc, (piece)]
    long = tf.strings.length(block) > LONG_DOC_BYTES
    count = small.row_lengths()
    # Long documents: groups of PER pieces; others: one group of all their pieces.
    groups = tf.where(long, (count + PER - 1) // PER, 1)
    first = tf.ragged.range(groups) * PER + tf.expand_dims(small.row_splits[:-1], 1)  # [doc, (group)]
    doc_end = tf.repeat(small.row_splits[1:], groups)
    ends = tf.where(tf.repeat(long, groups), tf.minimum(first.flat_values + PER, doc_end), doc_end)
    sizes = ends - first.flat_values
    joined = tf.RaggedTensor.from_row_lengths(small.flat_values, sizes, validate=False)
    return tf.strings.reduce_join(joined, axis=1)

  return tf.cond(tf.reduce_any(tf.strings.length(block) > LONG_DOC_BYTES), split, lambda: block)


__all__ = ["LONG_DOC_BYTES", "PIECE_CHARS", "cut", "pieces"]
