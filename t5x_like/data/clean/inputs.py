"""The input of `data clean` as units (a file, or a TFDS split) read in order; each
document gets the key (unit number, document number) that orders the output.

Files follow `data build`: text is one document per line (or, with text_docs=paragraph,
per run of non-blank lines; with text_docs=file, the whole file), JSONL one object per line; whitespace-only lines are not
documents, and a UTF-8 byte order mark at the start is dropped; lines end at LF or CRLF, or at CR in a file that has no LF at all (classic Mac
text). Files are opened as bytes so invalid UTF-8 reaches the cleaner, which counts it. A
binary file (a NUL byte in its first 8 KiB), a UTF-16 one (its byte order mark) or one
holding only whitespace holds no documents: it is listed in the report's `skipped_files`,
not read.
"""

from __future__ import annotations

import dataclasses
import glob
import os

from t5x_like.errors import DataError

_PROBE = 8192


@dataclasses.dataclass(frozen=True)
class Unit:
  kind: str  # "file" or "tfds"
  path: str  # a file path, or a TFDS name[:version]
  data_dir: str = ""
  split: str = "train"


def _expand(pattern: str) -> list[str]:
  if "://" in pattern:  # gs:// and friends through TensorFlow's filesystems
    import tensorflow as tf
    return sorted(tf.io.gfile.glob(pattern))
  return sorted(p for p in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(p))


def list_units(patterns: list[str], fmt: str, data_dir: str = "", split: str = "train") -> tuple[list[Unit], str]:
  """The input units in order and the format (auto resolved: jsonl when every file ends in
  .jsonl or .json, else text)."""
  if fmt == "tfds":
    return [Unit("tfds", p, data_dir, split) for p in patterns], fmt
  paths = []
  for p in patterns:
    found = _expand(p)
    if not found:
      raise DataError(f"--input {p!r} matches no file; check the path or quote the glob")
    paths += found
  if fmt == "auto":
    fmt = auto_format(paths)
  return [Unit("file", p) for p in paths], fmt


def auto_format(paths: list[str]) -> str:
  """jsonl when the files end in .jsonl or .json, text when none does; a mix is refused
  (the JSONL files would be read as text lines)."""
  jsonl = [p for p in paths if p.endswith((".jsonl", ".json"))]
  other = [p for p in paths if not p.endswith((".jsonl", ".json"))]
  if jsonl and other:
    raise DataError(f"--input mixes JSONL files ({_some(jsonl)}) with other files ({_some(other)}), which "
                    "would be read as text lines; give each kind its own run, or pass --format text or "
                    "--format jsonl to read them all one way")
  return "jsonl" if jsonl else "text"


def _some(paths: list[str], n: int = 2) -> str:
  return ", ".join(paths[:n]) + (f" and {len(paths) - n} more" if len(paths) > n else "")


def _open(path: str):
  if "://" in path:
    import tensorflow as tf
    return tf.io.gfile.GFile(path, "rb")
  return open(path, "rb")


def probe(unit: Unit) -> str | None:
  """Why the unit is skipped whole ("empty", "binary", "UTF-16 ..."), or None to read it."""
  if unit.kind != "file":
    return None
  with _open(unit.path) as f:
    head = f.read(_PROBE)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
      return "UTF-16 text; convert it to UTF-8 first, e.g. iconv -f UTF-16 -t UTF-8"
    if b"\x00" in head:
      return "binary"
    while head and not head.strip():  # leading blank lines: look further before calling it empty
      head = f.read(1 << 20)
  return None if head.strip() else "empty"


def _cr_only(path: str) -> bool:
  """True for a file whose lines end at CR alone (no LF in its first MiB, a CR in it)."""
  with _open(path) as f:
    head = f.read(1 << 20)
  return b"\n" not in head and b"\r" in head


def _split_at(f, sep: bytes, block: int = 1 << 20):
  """The lines of a binary file split at `sep`, read a block at a time."""
  rest = b""
  while True:
    chunk = f.read(block)
    if not chunk:
      break
    parts = (rest + chunk).split(sep)
    rest = parts.pop()
    yield from parts
  if rest:
    yield rest


def read_unit(index: int, unit: Unit, fmt: str, text_docs: str):
  """Yields ((unit index, document index), raw bytes) for each document of the unit."""
  if unit.kind == "tfds":
    yield from _read_tfds(index, unit)
    return
  if fmt == "text" and text_docs == "file":
    with _open(unit.path) as f:
      whole = f.read().removeprefix(b"\xef\xbb\xbf")
    if whole.strip():
      yield (index, 0), whole
    return
  n = 0
  paragraph: list[bytes] = []
  cr_only, first = _cr_only(unit.path), True
  with _open(unit.path) as f:
    for line in (_split_at(f, b"\r") if cr_only else f):
      line = line.rstrip(b"\r\n")
      if first:  # a UTF-8 byte order mark (Windows tools) is not text
        line, first = line.removeprefix(b"\xef\xbb\xbf"), False
      if not line.strip():
        if paragraph:
          yield (index, n), b"\n".join(paragraph)
          n, paragraph = n + 1, []
        continue
      if fmt == "text" and text_docs == "paragraph":
        paragraph.append(line)
        continue
      yield (index, n), line
      n += 1
  if paragraph:
    yield (index, n), b"\n".join(paragraph)


def _read_tfds(index: int, unit: Unit):
  from t5x_like.data.readers.tfds import tfds_builder

  class _Cfg:  # the two fields tfds_builder reads
    class tfds:  # noqa: N801
      name, data_dir = unit.path, unit.data_dir

  builder = tfds_builder(_Cfg)
  # The text feature is the first Text feature (what `data build` writes under --field).
  import tensorflow_datasets as tfds
  keys = [k for k, v in builder.info.features.items() if isinstance(v, tfds.features.Text)]
  if not keys:
    raise DataError(f"TFDS dataset {unit.path!r} has no Text feature to clean")
  ds = builder.as_dataset(split=unit.split, shuffle_files=False)
  for n, example in enumerate(ds.as_numpy_iterator()):
    yield (index, n), bytes(example[keys[0]])


__all__ = ["Unit", "auto_format", "list_units", "probe", "read_unit"]
