"""`t5x-like data build`: text or JSONL files -> a TFDS dataset with train and validation
splits (TFRecord shards of `tf.train.Example` plus TFDS metadata), which
`tfds.load(NAME, data_dir=DIR)` and `data.source='tfds'` read offline.

The shards are written here and described with `tfds.folder_dataset.write_metadata`
rather than by a `GeneratorBasedBuilder`: preparing through a builder class resolves its
source code location, which needs packages this project does not otherwise depend on.
"""

from __future__ import annotations

import json
import os
import re
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from t5x_like.data import json_lines  # noqa: E402
from t5x_like.data.clean.inputs import auto_format  # noqa: E402
from t5x_like.data.tokenizer import DataError, list_files  # noqa: E402
from t5x_like.workdir import writing_output  # noqa: E402

SHARD_BYTES = 64 << 20  # a new shard after this many bytes of text
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_VERSION = re.compile(r"\d+\.\d+\.\d+")


def _parse_name(name: str) -> tuple[str, str]:
  """NAME or NAME:VERSION, as TFDS spells them (snake_case, x.y.z)."""
  base, _, version = name.partition(":")
  version = version or "1.0.0"
  if not _NAME.fullmatch(base) or not _VERSION.fullmatch(version):
    raise DataError(f"--name {name!r} must be snake_case with an optional :x.y.z version, "
                    "e.g. my_corpus or my_corpus:1.0.0")
  import tensorflow_datasets as tfds

  try:
    tfds.builder_cls(base)
  except tfds.core.registered.DatasetNotFoundError:
    return base, version
  raise DataError(f"--name {base!r} is a dataset of the TFDS catalog, which would shadow the "
                  "files written here; choose another name")


def _documents(paths: list[str], fmt: str, field: str, skip_bad_lines: bool, skipped: list):
  """Yields each document (a str) of the files in order; blank lines are not documents."""
  for path in paths:
    with tf.io.gfile.GFile(path, "rb") as f:
      for n, raw in enumerate(f, 1):
        try:
          line = raw.decode("utf-8").rstrip("\r\n")
          if not line.strip():
            continue
          if fmt == "jsonl":
            try:
              record = json_lines.loads(line)
            except json.JSONDecodeError as e:
              raise ValueError(f"is not valid JSON: {e.msg}") from None
            value = record.get(field) if isinstance(record, dict) else None
            if not isinstance(value, str):
              raise ValueError(f"is not a JSON object with a string field {field!r} (--field)")
            line = value
        except (UnicodeDecodeError, ValueError) as e:
          if skip_bad_lines:
            skipped[0] += 1
            continue
          why = "is not UTF-8" if isinstance(e, UnicodeDecodeError) else str(e)
          raise DataError(f"{path}: line {n} {why}; fix or remove it, or pass --skip-bad-lines "
                          "to skip and count such lines") from None
        yield line


class _ShardWriter:
  """TFRecord shards of one split, named as TFDS expects once their count is known."""

  def __init__(self, directory: str, name: str, split: str, features):
    self.directory, self.name, self.split, self.features = directory, name, split, features
    self.lengths, self.num_bytes, self._writer, self._bytes = [], 0, None, 0

  def _path(self, i: int, n: int | str) -> str:
    return os.path.join(self.directory, f"{self.name}-{self.split}.tfrecord-{i:05d}-of-{n}")

  def write(self, example: dict, size: int) -> None:
    if self._writer is None or self._bytes >= SHARD_BYTES:
      self._close()
      self._writer = tf.io.TFRecordWriter(self._path(len(self.lengths), "tmp"))
      self.lengths.append(0)
      self._bytes = 0
    self._writer.write(self.features.serialize_example(example))
    self.lengths[-1] += 1
    self._bytes += size

  def _close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None

  def finish(self):
    import tensorflow_datasets as tfds

    self._close()
    for i in range(len(self.lengths)):
      final = self._path(i, f"{len(self.lengths):05d}")
      os.replace(self._path(i, "tmp"), final)
      self.num_bytes += os.path.getsize(final)
    return tfds.core.SplitInfo(name=self.split, shard_lengths=self.lengths, num_bytes=self.num_bytes)


def build_tfds(input_glob: str, name: str, data_dir: str, *, validation_fraction: float = 0.05,
               field: str = "text", fmt: str = "auto", skip_bad_lines: bool = False) -> dict:
  """Writes DATA_DIR/NAME/VERSION with a `train` and (when `validation_fraction` > 0) a
  `validation` split; every document goes to exactly one. Document i (in sorted file order)
  is held out when floor((i + 1) * f) > floor(i * f): exactly floor(n * f) documents,
  spread evenly over the input. Returns a summary; the directory appears only when complete.
  """
  import tensorflow_datasets as tfds

  base, version = _parse_name(name)
  if not 0 <= validation_fraction < 1:
    raise DataError(f"--validation-fraction must be in [0, 1), got {validation_fraction}")
  paths = list_files(input_glob, "--input")
  if fmt == "auto":
    fmt = auto_format(paths)
  if fmt not in ("text", "jsonl"):
    raise DataError(f"--format must be auto, text or jsonl, got {fmt!r}")
  final = os.path.join(data_dir, base, version)
  if tf.io.gfile.exists(final):
    raise DataError(f"{final} already exists; delete it, or build a new version with "
                    f"--name {base}:X.Y.Z")
  work = final + ".incomplete"
  with writing_output(work, "t5x-like data build"):  # a second build of this version stops
    shutil.rmtree(work, ignore_errors=True)  # what a crashed build left behind
    os.makedirs(work)
    features = tfds.features.FeaturesDict({field: tfds.features.Text()})
    writers = {s: _ShardWriter(work, base, s, features) for s in ("train", "validation")}
    skipped, n = [0], 0
    try:
      for n, doc in enumerate(_documents(paths, fmt, field, skip_bad_lines, skipped), 1):
        i = n - 1
        held_out = int((i + 1) * validation_fraction) > int(i * validation_fraction)
        writers["validation" if held_out else "train"].write({field: doc}, len(doc))
      if n == 0:
        raise DataError(f"the {len(paths)} files matching {input_glob!r} contain no documents")
      n_val = int(n * validation_fraction)
      if validation_fraction and n_val == 0:
        raise DataError(f"{n} documents x --validation-fraction {validation_fraction} holds out "
                        f"none; raise it to at least {1 / n:.3g} or pass 0 for no validation split")
      splits = [w.finish() for w in writers.values() if w.lengths]
      description = (f"Built by `t5x-like data build` from {input_glob!r} ({fmt}, {len(paths)} "
                     f"files); validation fraction {validation_fraction}.")
      tfds.folder_dataset.write_metadata(data_dir=work, features=features, split_infos=splits,
                                         version=version, check_data=False, description=description)
    except BaseException:
      shutil.rmtree(work, ignore_errors=True)
      raise
    os.rename(work, final)
  return {"name": base, "version": version, "path": final, "format": fmt,
          "splits": {s.name: s.num_examples for s in splits}, "skipped_lines": skipped[0]}


__all__ = ["build_tfds"]
