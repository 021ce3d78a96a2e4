"""TFRecord files of `tf.train.Example`: the document is the first value of one bytes
feature (`data.tfrecord.feature`). TFDS splits of plain text are read through this reader
too, from TFDS's own shard files (see tfds.py).

A TFRecord file can be garbled or cut short. Its records are read with `ignore_errors`,
which ends the file at the first bad frame, and the bytes read (each record plus its 16
framing bytes) are compared with the file's size at its end: a shortfall stops the run
with a DataError naming the file and the byte offset, or with `data.skip_bad_lines=true`
skips the rest of that file and counts it.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from t5x_like.data.readers import checks  # noqa: E402
from t5x_like.data.readers.files import NOT_UTF8, SAMPLE_BYTES, FileReader  # noqa: E402
from t5x_like.errors import DataError  # noqa: E402

_FRAME_BYTES = 16  # length (8) + its CRC (4) + the data's CRC (4)


class TFRecordReader(FileReader):
  record_kind = "record"
  line_records = False  # framed records cannot be cut at a byte offset: files stay whole

  def __init__(self, cfg, key_prefix: str = "data.", feature: str | None = None):
    super().__init__(cfg, key_prefix)
    self.feature = cfg.tfrecord.feature if feature is None else feature

  @property
  def missing(self) -> str:
    return f": no record has a non-blank UTF-8 bytes feature {self.feature!r}"

  def records(self, path):
    return tf.data.TFRecordDataset(path).ignore_errors()

  def decode(self, block):
    values = tf.io.parse_example(block, {self.feature: tf.io.VarLenFeature(tf.string)})
    values = tf.RaggedTensor.from_sparse(values[self.feature])
    docs = tf.strings.reduce_join(values[:, :1], axis=1)  # the feature's first value
    missing = values.row_lengths() == 0
    why = tf.where(missing, f" has no bytes feature {self.feature!r} ({self.key_prefix}tfrecord.feature)",
                   NOT_UTF8)
    return docs, missing | ~checks.is_utf8(docs), why

  def check_blocks(self, blocks, path, skip, take, size, counter, name) -> tf.data.Dataset:
    """Checks each block, counting the bytes read; after the last block, a whole file whose
    bytes fall short of its size was cut off by a bad frame."""
    end = tf.data.Dataset.from_tensors((tf.constant(-1, tf.int64), tf.zeros([0], tf.string)))
    marked = blocks.map(lambda i, b: (i, b, False)).concatenate(end.map(lambda i, b: (i, b, True)))
    whole = tf.logical_and(tf.equal(skip, 0), tf.equal(take, -1))

    def at_end(read, count):
      # A whole file must be read to its last byte; a range (TFDS shards) to its last record.
      short = (whole & (read < size)) | ((take >= 0) & (count < take))
      where = tf.strings.join([path, ": corrupt or truncated TFRecord data at byte ", tf.strings.as_string(read),
                               " of ", tf.strings.as_string(size)])
      if counter is None:
        done = checks.assert_no_error(short, where, "; fix or remove the file, or set data.skip_bad_lines=true "
                                      "to skip the rest of it")
      else:
        done = tf.cond(short, lambda: _skipped(counter, where, name), lambda: tf.constant(0, tf.int64))
      with tf.control_dependencies([done]):
        return tf.zeros([0], tf.string)

    def step(state, element):
      read, count = state
      i, block, last = element
      read += tf.reduce_sum(tf.cast(tf.strings.length(block), tf.int64) + _FRAME_BYTES)
      count += tf.size(block, out_type=tf.int64)
      docs = tf.cond(last, lambda: at_end(read, count),
                     lambda: self.check_block(path, skip, i, block, counter, name))
      return (read, count), docs

    return marked.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), step)

  def usable(self, record: bytes) -> bool:
    try:
      example = tf.train.Example.FromString(record)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError has no stable import path
      return False
    feature = example.features.feature.get(self.feature)
    if feature is None or feature.WhichOneof("kind") != "bytes_list" or not feature.bytes_list.value:
      return False
    value = feature.bytes_list.value[0]
    try:
      return bool(value.decode("utf-8").strip())
    except UnicodeDecodeError:
      return False

  def sample_record_bytes(self, path: str) -> tuple[int, int]:
    """(bytes, records) of the file's first records, until SAMPLE_BYTES are read."""
    total = count = 0
    for record in self.records_of(path):
      total, count = total + len(record), count + 1
      if total >= SAMPLE_BYTES:
        break
    return total, count

  def records_of(self, path: str):
    for record in tf.data.TFRecordDataset(path).ignore_errors():
      yield record.numpy()

  def probe(self, paths, inp, share):
    """The first record of the first non-empty file must be an Example with the feature;
    then at least one record makes a document for this host."""
    for path in paths:
      try:
        first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
      except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        raise DataError(f"{path} ({inp.key}) is not a TFRecord file ({e.message.splitlines()[0]}); "
                        "data.source='tfrecord' reads files written by tf.io.TFRecordWriter") from None
      if first is None:
        continue  # an empty shard
      try:
        example = tf.train.Example.FromString(first.numpy())
      except Exception:  # noqa: BLE001
        raise DataError(f"the first record of {path} ({inp.key}) is not a tf.train.Example") from None
      features = example.features.feature
      if self.feature not in features or features[self.feature].WhichOneof("kind") != "bytes_list":
        have = ", ".join(f"{k} ({v.WhichOneof('kind')})" for k, v in sorted(features.items()))
        raise DataError(f"the first record of {path} ({inp.key}) has no bytes feature {self.feature!r}; "
                        f"it has: {have or 'no features'}; set {self.key_prefix}tfrecord.feature")
      break
    super().probe(paths, inp, share)


def _skipped(counter, where, name):
  """Counts a skipped file tail as one bad record and says so."""
  total = counter.assign_add(1)
  with tf.control_dependencies([tf.print("t5x_like data:", where, "- skipped the rest of the file "
                                         "(data.skip_bad_lines=true) in", name, output_stream=sys.stderr)]):
    return tf.identity(total)


__all__ = ["TFRecordReader"]
