"""Readers of files with one record per document: text lines, JSON lines and TFRecord
`tf.train.Example`s. They share the host split and the block checks; each says how to
open a file, how to decode a block of records and what to probe before reading."""

from __future__ import annotations

import abc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from t5x_like.data import long_documents  # noqa: E402
from t5x_like.data.readers import checks, pieces  # noqa: E402
from t5x_like.data.readers.base import Input, Reader, Share  # noqa: E402
from t5x_like.data.tokenizer import list_files  # noqa: E402
from t5x_like.errors import DataError  # noqa: E402

NOT_UTF8 = " is not UTF-8"
SAMPLE_BYTES = 1 << 20  # read from the start of a file to size the shuffle buffer
SAMPLE_FILES = 16
HEAD_BYTES = 64 << 10  # of each file the probe opens: what check_head looks at


def host_files(count: int, share: Share) -> list[int]:
  """Indices of the files this host reads of `count`: every P-th file from its own index
  when there are at least as many files as hosts, else all of them (each host then keeps
  every P-th document)."""
  if count >= share.process_count:
    return list(range(share.process_index, count, share.process_count))
  return list(range(count))


class FileReader(Reader):
  record_kind = "line"  # how errors count records: "file: line 12 ..."
  line_records = True  # one record per line: training cuts large files into pieces by bytes

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
  def usable(self, record: bytes) -> bool:
    """Whether a raw record makes a document (decodable, not blank): what the probe counts."""

  def records_of(self, path: str):
    """The raw records of one file, in Python, for the probe."""
    with tf.io.gfile.GFile(path, "rb") as f:
      yield from f

  def check_head(self, path: str, head: bytes) -> None:
    """Files a line reader would misread without a word: compressed ones (their bytes as
    lines of junk) and ones whose lines end in CR alone (one document of the whole file)."""
    if not self.line_records:
      return
    if (head[:2] == b"\x1f\x8b" or head[:6] == b"\xfd7zXZ\x00" or head[:4] == b"\x28\xb5\x2f\xfd"
        or head[:3] == b"BZh" and head[4:10] == b"1AY&SY"):
      raise DataError(f"{path} is compressed (gzip, bzip2, xz or zstd); the text and JSONL sources read plain "
                      "files: decompress it first (e.g. gunzip -k), or write a TFDS dataset with `t5x-like data "
                      "build`")
    # Lines a few hundred bytes long, each ended by a CR: not one long line with stray CRs in it.
    if len(head) > 16 and b"\n" not in head and head.count(b"\r") >= max(2, len(head) // 4096):
      raise DataError(f"{path}: its lines end in a carriage return alone (classic Mac line endings), so it would "
                      "read as one document; convert them first (tr '\\r' '\\n' < IN > OUT, or `t5x-like data "
                      "clean`, which splits at them)")

  def check_heads(self, paths: list[str]) -> None:
    """`check_head` on up to SAMPLE_FILES files spread over `paths`, and the compression
    check (a few bytes) on every other local one: a gzip file among many plain ones too."""
    if not self.line_records:
      return
    sampled = set(paths[::max(1, len(paths) // SAMPLE_FILES)][:SAMPLE_FILES])
    for path in paths:
      if path in sampled or "://" not in path:
        with tf.io.gfile.GFile(path, "rb") as f:
          self.check_head(path, f.read(HEAD_BYTES if path in sampled else 16))

  def probe(self, paths: list[str], inp: Input, share: Share) -> None:
    """Fails before the graph on input that yields no document for this host: a stream that
    repeats an empty epoch would spin forever. Reads until enough documents are found, so
    it costs a line or two on real data and the whole input only when it has none."""
    file_level = len(paths) >= share.process_count
    mine = [paths[i] for i in host_files(len(paths), share)]
    need = 1 if file_level else share.process_count  # element-level: every host needs one
    found = not_utf8 = 0
    self.check_heads(mine)
    for path in mine:
      for record in self.records_of(path):
        if self.usable(record):
          found += 1
          if found >= need:
            return
        elif not _is_utf8(record):
          not_utf8 += 1
    where = f"the files matching {inp.files!r} ({inp.key})"
    if found:
      raise DataError(f"{where} hold {found} document(s), fewer than the {share.process_count} hosts "
                      "reading them; add data or use fewer hosts")
    if not any(tf.io.gfile.stat(p).length for p in mine):
      raise DataError(f"all {len(mine)} files matching {inp.files!r} ({inp.key}) are empty"
                      + ("" if len(mine) == len(paths) else f" (the {len(mine)} this host reads)"))
    why = (f": {not_utf8} record(s) are not UTF-8 text (skipped by data.skip_bad_lines) and the rest are "
           f"blank" if not_utf8 else self.missing)
    raise DataError(f"{where} contain no document{why} (host {share.process_index} of "
                    f"{share.process_count} reads {len(mine)} of the {len(paths)} files)")

  missing = ": only whitespace"  # how the probe's error describes input without documents

  def mean_document_bytes(self, inp: Input, share: Share) -> float | None:
    """Bytes per record in the first SAMPLE_BYTES of up to SAMPLE_FILES of this host's
    files (spread over them), at most `long_documents.LONG_DOC_BYTES` (what training cuts
    longer documents to). A record is a line here; readers of framed records override
    `sample_record_bytes`."""
    paths = list_files(inp.files, inp.key)
    mine = [paths[i] for i in host_files(len(paths), share)]
    step = max(1, len(mine) // SAMPLE_FILES)
    total = records = 0
    for path in mine[::step][:SAMPLE_FILES]:
      n, k = self.sample_record_bytes(path)
      total, records = total + n, records + k
    if not total:
      return None
    return min(total / records, long_documents.LONG_DOC_BYTES) if records else long_documents.LONG_DOC_BYTES

  def sample_record_bytes(self, path: str) -> tuple[int, int]:
    """(bytes, whole records in them) of the start of one file: lines in its first
    SAMPLE_BYTES (a line the sample cuts counts when it is the file's last)."""
    with tf.io.gfile.GFile(path, "rb") as f:
      head = f.read(SAMPLE_BYTES)
      last = len(head) < SAMPLE_BYTES and bool(head) and not head.endswith(b"\n")
    return len(head), head.count(b"\n") + int(last)

  def read(self, inp: Input, share: Share, counter, name: str) -> tf.data.Dataset:
    paths = list_files(inp.files, inp.key)
    self.probe(paths, inp, share)
    return self.read_files(paths, share, counter, name)

  def check_block(self, path, skip, i, block, counter, name) -> tf.Tensor:
    """The documents of block `i` of a file (records skip + i * CHECK_BLOCK + 1 ...), the bad
    ones failed on or dropped and counted."""
    return self.check_records(path, skip + i * checks.CHECK_BLOCK, block, counter, name)

  def check_records(self, path, before, block, counter, name) -> tf.Tensor:
    """The documents of a block of records numbered before + 1, before + 2, ..."""
    docs, bad, why = self.decode(block)

    def locate(j):
      return tf.strings.join([path, f": {self.record_kind} ", tf.strings.as_string(before + j + 1)])

    return checks.check_block(docs, bad, locate=locate, why=why, counter=counter, name=name)

  def check_blocks(self, blocks, path, skip, take, size, counter, name) -> tf.data.Dataset:
    """Blocks (index, records) of one file -> blocks of checked documents."""
    return blocks.map(lambda i, block: self.check_block(path, skip, i, block, counter, name))

  def file_blocks(self, path, skip, take, size, counter, name) -> tf.data.Dataset:
    """Blocks (1-D) of the documents of records skip+1 .. skip+take of one file (take -1:
    to the end) of `size` bytes, checked in blocks that know their file and record numbers."""
    blocks = self.records(path).skip(skip).take(take).batch(checks.CHECK_BLOCK).enumerate()
    return self.check_blocks(blocks, path, skip, take, size, counter, name)

  def file_documents(self, path, skip, take, size, counter, name) -> tf.data.Dataset:
    return self.file_blocks(path, skip, take, size, counter, name).unbatch()

  def piece_blocks(self, path, start, end, skip, take, size, counter, name) -> tf.data.Dataset:
    """Blocks (1-D) of the documents of one piece (`pieces.Piece`): records skip+1 ..
    skip+take, or for line sources the lines in bytes [start, end), numbered from skip + 1."""
    if not self.line_records:
      return self.file_blocks(path, skip, take, size, counter, name)
    lines = pieces.line_blocks(path, start, end, size)
    return lines.map(lambda before, block: self.check_records(path, skip + before, block, counter, name))

  def read_files(self, paths: list[str], share: Share, counter, name: str,
                 ranges: list[tuple[int, int]] | None = None) -> tf.data.Dataset:
    """This host's documents: whole files when there are at least as many files as hosts
    (host i reads files i, i+P, ...), otherwise every P-th document of all files. The
    hosts' streams are disjoint and together cover the data; the order depends only on the
    seed. Training reads all parts of the host's files at once (`pieces.py`) and cuts long
    documents (`long_documents.py`), evaluation reads the files in order. `ranges` gives
    (skip, take) records per file (default: all)."""
    p, count = share.process_index, share.process_count
    file_level = len(paths) >= count
    ranges = ranges or [(0, -1)] * len(paths)
    mine = host_files(len(paths), share)
    sizes = [tf.io.gfile.stat(paths[i]).length for i in mine]
    if file_level and count > 1 and share.shuffle and share.process_index == 0:
      _warn_uneven(paths, count, name)
    if share.shuffle:
      # The same seed on every host: element-level sharding needs identical streams to split.
      parts = pieces.plan([paths[i] for i in mine], sizes, [ranges[i] for i in mine], self.line_records)

      def read(path, start, end, skip, take, size):
        return self.piece_blocks(path, start, end, skip, take, size, counter, name).map(long_documents.cut)

      docs = pieces.interleaved(parts, pieces.strata(parts), read, share.seed, share.repeat)
    else:  # evaluation reads the files in order, one after another
      files = tf.data.Dataset.from_tensor_slices((
          [paths[i] for i in mine], [ranges[i][0] for i in mine], [ranges[i][1] for i in mine], sizes))
      files = files.map(lambda f, s, t, n: (f, tf.cast(s, tf.int64), tf.cast(t, tf.int64), tf.cast(n, tf.int64)))
      if share.repeat:
        files = files.repeat()
      docs = files.flat_map(lambda path, skip, take, size: self.file_documents(path, skip, take, size, counter,
                                                                               name))
    if not file_level:
      docs = docs.shard(count, p)
    return docs


def _warn_uneven(paths: list[str], hosts: int, name: str) -> None:
  """Whole files per host: with shares of very different sizes, a host with less data
  repeats its documents more often in the same steps (twenty documents can make half of
  every global batch). Said once, at start-up, by the first host."""
  sizes = [tf.io.gfile.stat(p).length for p in paths]
  shares = [sum(sizes[h::hosts]) for h in range(hosts)]
  if max(shares) > 2 * max(min(shares), 1):
    small = shares.index(min(shares))
    print(f"[t5x_like] warning: the {len(paths)} files of {name} go to the {hosts} hosts whole, in shares from "
          f"{min(shares):,} bytes (host {small}) to {max(shares):,}: hosts with less data repeat it more often in "
          "the same steps. Split the input into more files of similar size, or read it as one stream sliced by "
          "rows with --config.data.host_split=rows", flush=True)


class TextReader(FileReader):
  """One document per line (also the built-in corpus, source=synthetic)."""

  def records(self, path):
    return tf.data.TextLineDataset(path)

  def decode(self, block):
    return block, ~checks.is_utf8(block), NOT_UTF8

  def usable(self, record: bytes) -> bool:
    return bool(record.strip()) and _is_utf8(record)


def _is_utf8(raw: bytes) -> bool:
  try:
    raw.decode("utf-8")
  except UnicodeDecodeError:
    return False
  return True


__all__ = ["FileReader", "NOT_UTF8", "TextReader", "host_files"]
