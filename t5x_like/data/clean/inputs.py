"""The input of `data clean` as units (a file, or a TFDS split) read in order; each
document gets the key (unit number, document number) that orders the output.

Files follow `data build`: text is one document per line (or, with text_docs=paragraph,
per run of non-blank lines), JSONL one object per line; whitespace-only lines are not
documents. Files are opened as bytes so invalid UTF-8 reaches the cleaner, which counts
it. A binary file (a NUL byte in its first 8 KiB) or an empty one holds no documents: it
is listed in the report's `skipped_files`, not read.
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
    fmt = "jsonl" if all(p.endswith((".jsonl", ".json")) for p in paths) else "text"
  return [Unit("file", p) for p in paths], fmt


def _open(path: str):
  if "://" in path:
    import tensorflow as tf
    return tf.io.gfile.GFile(path, "rb")
  return open(path, "rb")


def probe(unit: Unit) -> str | None:
  """Why the unit is skipped whole ("empty", "binary"), or None to read it."""
  if unit.kind != "file":
    return None
  with _open(unit.path) as f:
    head = f.read(_PROBE)
  if not head.strip():
    return "empty"
  if b"\x00" in head:
    return "binary"
  return None


def read_unit(index: int, unit: Unit, fmt: str, text_docs: str):
  """Yields ((unit index, document index), raw bytes) for each document of the unit."""
  if unit.kind == "tfds":
    yield from _read_tfds(index, unit)
    return
  n = 0
  paragraph: list[bytes] = []
  with _open(unit.path) as f:
    for line in f:
      line = line.rstrip(b"\r\n")
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


__all__ = ["Unit", "list_units", "probe", "read_unit"]
