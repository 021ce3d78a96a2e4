"""One reader per data source behind one interface (`base.Reader`): `reader_for(cfg)`
picks it by `data.source`. To add a source, write a Reader subclass and add it here."""

from __future__ import annotations

from t5x_like.data.readers.base import Input, Reader, Share
from t5x_like.data.readers.checks import as_data_error, data_errors, skipped_lines
from t5x_like.data.readers.files import TextReader
from t5x_like.data.readers.jsonl import JsonlReader, jsonl_extract
from t5x_like.data.readers.tfds import TfdsReader
from t5x_like.data.readers.tfrecord import TFRecordReader

# The built-in corpus is written as text files before the pipeline is built.
READERS: dict[str, type[Reader]] = {"synthetic": TextReader, "text": TextReader, "jsonl": JsonlReader,
                                    "tfrecord": TFRecordReader, "tfds": TfdsReader}


def reader_for(cfg, key_prefix: str = "data.") -> Reader:
  return READERS[cfg.source](cfg, key_prefix)


def needs_external_state(cfg) -> bool:
  """True when the pipeline holds a skip counter: a variable that tf.data cannot save with
  the iterator (the count restarts with the process; the stream itself is restored)."""
  return cfg.skip_bad_lines or any(
      (e.fields if hasattr(e, "fields") else e).get("skip_bad_lines") for e in cfg.mixture)


__all__ = ["READERS", "Input", "Reader", "Share", "as_data_error", "data_errors", "jsonl_extract",
           "needs_external_state", "reader_for", "skipped_lines"]
