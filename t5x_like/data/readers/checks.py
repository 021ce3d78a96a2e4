"""Record checks inside the graph: every reader decodes records in blocks and hands each
block's bad records (not UTF-8, no text field) here. They stop the stream with a DataError
naming the file and record, or with `data.skip_bad_lines=true` are dropped and counted.

A graph cannot raise a Python exception, so a bad record fails a `tf.debugging.Assert`
whose message is marked; `data_errors()` turns that TensorFlow error back into the
DataError at the one place batches leave tf.data.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from t5x_like.errors import DataError  # noqa: E402

CHECK_BLOCK = 256  # records checked per call: per-call overhead, not the check, dominates
_ERROR_START, _ERROR_END = "<<t5x_like.DataError: ", " >>"


def assert_no_error(failed: tf.Tensor, where: tf.Tensor, fix: str):
  """An op that stops the stream with the DataError `where + fix` when `failed`."""
  return tf.debugging.Assert(tf.logical_not(failed), [tf.strings.join([_ERROR_START, where, fix, _ERROR_END])])

# Every code point but the surrogates: RE2 compiles these ranges to exact UTF-8 byte
# sequences, so the match agrees with Python's strict decoding (overlong forms, encoded
# surrogates and values above U+10FFFF fail); it is 7x faster than a transcode.
_VALID_UTF8 = r"[\x{0}-\x{D7FF}\x{E000}-\x{10FFFF}]*"


def is_utf8(s: tf.Tensor) -> tf.Tensor:
  return tf.strings.regex_full_match(s, _VALID_UTF8)


# ---------------------------------------------------------------- errors out of the graph


def as_data_error(e: Exception) -> DataError | None:
  """The DataError a bad record raised in graph (it reaches Python as a TensorFlow error);
  None for other errors."""
  found = re.search(re.escape(_ERROR_START) + r"(.*?)" + re.escape(_ERROR_END), str(e), re.S)
  if not found:
    return None
  # The assertion prints the message C-escaped (quotes, non-ASCII bytes of file names).
  return DataError(codecs.escape_decode(found.group(1).encode())[0].decode("utf-8", "replace"))


@contextlib.contextmanager
def data_errors():
  """Around code that pulls batches from a pipeline: a bad record leaves as its DataError."""
  try:
    yield
  except tf.errors.OpError as e:
    error = as_data_error(e)
    if error is None:
      raise
    raise error from None


# ---------------------------------------------------------------- skipped-record counters


_SKIPPED: dict[str, tf.Variable] = {}


def skipped_lines() -> dict[str, int]:
  """Bad records skipped with `data.skip_bad_lines=true`, per source, by the latest dataset
  built for it in this process (for training: since the process started), e.g.
  `{"data.train_files /data/*.jsonl": 3}`. Cheap to call; the trainer can log it."""
  return {name: int(v.numpy()) for name, v in _SKIPPED.items()}


def skip_counter(name: str) -> tf.Variable:
  if name not in _SKIPPED:
    with tf.init_scope():
      _SKIPPED[name] = tf.Variable(0, dtype=tf.int64, trainable=False)
  _SKIPPED[name].assign(0)  # a rebuilt dataset (e.g. each eval pass) counts from zero
  return _SKIPPED[name]


# ---------------------------------------------------------------- one block


def _highest_bit(x: tf.Tensor) -> tf.Tensor:
  """The largest power of two <= x (0 for 0), for int64 x >= 0."""
  for shift in (1, 2, 4, 8, 16, 32):
    x = tf.bitwise.bitwise_or(x, tf.bitwise.right_shift(x, shift))
  return x - tf.bitwise.right_shift(x, 1)


def check_block(docs, bad, *, locate, why, counter: tf.Variable | None, name: str):
  """Drops the bad records of a block (counting them) or fails naming the first one:
  `locate(i)` says where record i of the block is, `why` what is wrong (per record, or
  one string for all)."""
  if counter is None:
    def fail():  # built only for a bad block: the check costs little on good ones
      index = tf.argmax(tf.cast(bad, tf.int32), output_type=tf.int64)
      reason = why if isinstance(why, str) else why[index]
      msg = tf.strings.join([_ERROR_START, locate(index), reason,
                             "; fix or remove it, or set data.skip_bad_lines=true to skip and "
                             "count such records", _ERROR_END])
      with tf.control_dependencies([tf.debugging.Assert(False, [msg])]):
        return tf.identity(docs)

    return tf.cond(tf.reduce_any(bad), fail, lambda: docs)
  n_bad = tf.reduce_sum(tf.cast(bad, tf.int64))
  total = counter.assign_add(n_bad)

  def log():
    # One line each time the count passes a power of two: visible, never a flood.
    tf.print("t5x_like data:", total, "bad records skipped so far in", name,
             "(not UTF-8, or without the text field; data.skip_bad_lines=true)",
             output_stream=sys.stderr)
    return tf.constant(0)

  before = total - n_bad
  # The count passed a power of two when the highest one bit of `total` is above `before`.
  crossed = (n_bad > 0) & (_highest_bit(total) > before)
  tf.cond(crossed, log, lambda: tf.constant(0))
  return tf.boolean_mask(docs, ~bad)


__all__ = ["CHECK_BLOCK", "as_data_error", "check_block", "data_errors", "is_utf8",
           "skip_counter", "skipped_lines"]
