"""TFRecord files of `tf.train.Example`: the document is the first value of one bytes
feature (`data.tfrecord.feature`). TFDS splits of plain text are read through this reader
too, from TFDS's own shard files (see tfds.py)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from t5x_like.data.readers import checks  # noqa: E402
from t5x_like.data.readers.files import NOT_UTF8, FileReader  # noqa: E402
from t5x_like.errors import DataError  # noqa: E402


class TFRecordReader(FileReader):
  record_kind = "record"

  def __init__(self, cfg, key_prefix: str = "data.", feature: str | None = None):
    super().__init__(cfg, key_prefix)
    self.feature = cfg.tfrecord.feature if feature is None else feature

  def records(self, path):
    return tf.data.TFRecordDataset(path)

  def decode(self, block):
    values = tf.io.parse_example(block, {self.feature: tf.io.VarLenFeature(tf.string)})
    values = tf.RaggedTensor.from_sparse(values[self.feature])
    docs = tf.strings.reduce_join(values[:, :1], axis=1)  # the feature's first value
    missing = values.row_lengths() == 0
    why = tf.where(missing, f" has no bytes feature {self.feature!r} ({self.key_prefix}tfrecord.feature)",
                   NOT_UTF8)
    return docs, missing | ~checks.is_utf8(docs), why

  def probe(self, paths, inp):
    """The first record of the first non-empty file must be an Example with the feature."""
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
      except Exception:  # noqa: BLE001 - protobuf's DecodeError has no stable import path
        raise DataError(f"the first record of {path} ({inp.key}) is not a tf.train.Example") from None
      features = example.features.feature
      if self.feature not in features or features[self.feature].WhichOneof("kind") != "bytes_list":
        have = ", ".join(f"{k} ({v.WhichOneof('kind')})" for k, v in sorted(features.items()))
        raise DataError(f"the first record of {path} ({inp.key}) has no bytes feature {self.feature!r}; "
                        f"it has: {have or 'no features'}; set {self.key_prefix}tfrecord.feature")
      return
    raise DataError(f"all {len(paths)} files matching {inp.files!r} ({inp.key}) are empty")


__all__ = ["TFRecordReader"]
