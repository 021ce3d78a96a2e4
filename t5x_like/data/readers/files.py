"""Readers of files with one record per document: text lines, JSON lines and TFRecord
`tf.train.Example`s. They share the host split and the block checks; each says how to
open a file, how to decode a block of records and what to probe before reading."""

from __future__ import annotations

import abc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from t5x_like.data.readers import checks  # noqa: E402
from t5x_like.data.readers.base import FILE_CYCLE, Input, Reader, Share  # noqa: E402
from t5x_like.data.tokenizer import list_files  # noqa: E402
from t5x_like.errors import DataError  # noqa: E402

_TEXT_PROBE_BYTES = 1 << 16  # bytes read per file when checking that the files hold text
NOT_UTF8 = " is not UTF-8"


class FileReader(Reader):
  record_kind = "line"  # how errors count records: "file: line 12 ..."

  def input_for(self, role: str, files: str = "") -> Input:
    d = self.cfg
    if not files:
      files = d.eval_files if role == "eval" and d.eval_files else d.train_files
      role = "eval" if role == "eval" and d.eval_files else "train"
    return Input(files=files, split="", key=f"{self.key_prefix}{role}_files")

  @abc.abstractmethod
  def records(self, path: tf.Tensor) -> tf.data.Dataset:
    """The raw records of one file."""

  @abc.abstractmethod
  def decode(self, block: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | str]:
    """(documents, bad, why) of a block of records: why is a string or one per record."""

  @abc.abstractmethod
  def probe(self, paths: list[str], inp: Input) -> None:
    """Fails early on input that can never yield a document, reading only file heads."""

  def read(self, inp: Input, share: Share, counter, name: str) -> tf.data.Dataset:
    paths = list_files(inp.files, inp.key)
    self.probe(paths, inp)
    return self.read_files(paths, share, counter, name)

  def file_documents(self, path: tf.Tensor, skip: tf.Tensor, take: tf.Tensor, counter,
                     name: str) -> tf.data.Dataset:
    """The documents of records skip+1 .. skip+take of one file (take -1: to the end),
    checked in blocks that know their file and record numbers."""

    def check(i, block):
      docs, bad, why = self.decode(block)

      def locate(j):
        return tf.strings.join([path, f": {self.record_kind} ",
                                tf.strings.as_string(skip + i * checks.CHECK_BLOCK + j + 1)])

      return checks.check_block(docs, bad, locate=locate, why=why, counter=counter, name=name)

    records = self.records(path).skip(skip).take(take)
    return records.batch(checks.CHECK_BLOCK).enumerate().map(check).unbatch()

  def read_files(self, paths: list[str], share: Share, counter, name: str,
                 ranges: list[tuple[int, int]] | None = None) -> tf.data.Dataset:
    """This host's documents: whole files when there are at least as many files as hosts
    (host i reads files i, i+P, ...), otherwise every P-th document of all files. The
    hosts' streams are disjoint and together cover the data; the order depends only on the
    seed. `ranges` gives (skip, take) records per file (default: all)."""
    p, count = share.process_index, share.process_count
    file_level = len(paths) >= count
    ranges = ranges or [(0, -1)] * len(paths)
    mine = list(range(p, len(paths), count)) if file_level else range(len(paths))
    files = tf.data.Dataset.from_tensor_slices((
        [paths[i] for i in mine], [ranges[i][0] for i in mine], [ranges[i][1] for i in mine]))
    files = files.map(lambda f, s, t: (f, tf.cast(s, tf.int64), tf.cast(t, tf.int64)))
    if share.shuffle:
      # The same seed on every host: element-level sharding needs identical streams to split.
      files = files.shuffle(len(mine), seed=share.seed, reshuffle_each_iteration=True)
    if share.repeat:
      files = files.repeat()

    def read(path, skip, take):
      return self.file_documents(path, skip, take, counter, name)

    if share.shuffle and len(mine) > 1:
      docs = files.interleave(read, cycle_length=min(FILE_CYCLE, len(mine)), block_length=16)
    else:  # evaluation reads the files in order, one after another
      docs = files.flat_map(read)
    if not file_level:
      docs = docs.shard(count, p)
    return docs

  def probe_text(self, paths: list[str], inp: Input, needle: bytes | None, missing: str) -> None:
    """Fails on files without documents (a repeated empty stream would hang forever): all
    empty, all blank, or (with `needle`) none holding it. Stops at the first file with text."""
    sizes = []
    for path in paths:
      with tf.io.gfile.GFile(path, "rb") as f:
        head = f.read(_TEXT_PROBE_BYTES)
      sizes.append(len(head))
      if head.strip() and (needle is None or needle in head):
        return
      if len(head) == _TEXT_PROBE_BYTES:
        return  # a big file: trust that text follows rather than read it all now
    if not any(sizes):
      raise DataError(f"all {len(paths)} files matching {inp.files!r} ({inp.key}) are empty")
    if needle is not None:
      raise DataError(f"no line of the files matching {inp.files!r} ({inp.key}) has {missing}")
    raise DataError(f"the {len(paths)} files matching {inp.files!r} ({inp.key}) contain only whitespace")


class TextReader(FileReader):
  """One document per line (also the built-in corpus, source=synthetic)."""

  def records(self, path):
    return tf.data.TextLineDataset(path)

  def decode(self, block):
    return block, ~checks.is_utf8(block), NOT_UTF8

  def probe(self, paths, inp):
    self.probe_text(paths, inp, None, "")


__all__ = ["FileReader", "NOT_UTF8", "TextReader"]
