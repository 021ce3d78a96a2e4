"""Document sources: text lines, JSONL fields, TFRecord `tf.train.Example` features and
TFDS datasets -> this host's stream of document strings.

Every source is read with tf.data ops only, so the iterator state (file positions, shuffle
buffers) is saved by `tf.train.Checkpoint(iterator=it)`. Records are checked in blocks
as they are read: a line that is not UTF-8 (or a JSONL line / Example without the text
field) stops the run with an error naming the file and line, or with
`data.skip_bad_lines=true` is dropped and counted (`skipped_lines()`, plus a log line).
"""

from __future__ import annotations

import codecs
import dataclasses
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from t5x_like.config import DataConfig  # noqa: E402
from t5x_like.data.tokenizer import DataError, list_files  # noqa: E402

FILE_CYCLE = 4  # files read at once (interleaved) when training
CHECK_BLOCK = 256  # records checked per call: per-call overhead, not the check, dominates
_TEXT_PROBE_BYTES = 1 << 16  # bytes read per file when checking that the files hold text
_ERROR_START, _ERROR_END = "<<t5x_like.DataError: ", " >>"
_BUILD_HINT = "t5x-like data build --input GLOB --name NAME --data-dir DIR"


# ---------------------------------------------------------------- JSON in graph


_PLACEHOLDER = "\x01"  # stands for an escaped backslash; raw control characters are not JSON


def _unescape_json(s: tf.Tensor) -> tf.Tensor:
  """Decodes JSON string escapes (including \\uXXXX and surrogate pairs) of a batch of
  string bodies, in graph. Escaped backslashes are set aside first, so every backslash
  that remains starts an escape."""
  s = tf.strings.regex_replace(s, r"\\\\", _PLACEHOLDER)
  for escaped, char in (('"', '"'), ("/", "/"), ("n", "\n"), ("t", "\t"), ("r", "\r"),
                        ("b", "\b"), ("f", "\f")):
    s = tf.strings.regex_replace(s, r"\\" + re.escape(escaped), char)
  has_u = tf.reduce_any(tf.strings.regex_full_match(s, r".*\\u[0-9a-fA-F]{4}.*"))
  # Without \u escapes a string substitution restores the backslashes; with them, it
  # happens per code point, since \u0001 decodes to the placeholder character itself.
  return tf.cond(has_u, lambda: _decode_u_escapes(s),
                 lambda: tf.strings.regex_replace(s, _PLACEHOLDER, r"\\"))


def _decode_u_escapes(s: tf.Tensor) -> tf.Tensor:
  cps = tf.strings.unicode_decode(s, "UTF-8", errors="replace")
  flat, rows = cps.flat_values, cps.value_rowids()
  n = tf.shape(flat)[0]
  ahead = tf.concat([flat, tf.zeros([12], tf.int32)], 0)  # look-ahead past the last char
  rows_ahead = tf.concat([rows, tf.fill([12], tf.constant(-1, rows.dtype))], 0)

  def char(k):
    return ahead[k:k + n]

  def hex_value(c):
    digit = tf.where(c <= 57, c - 48, tf.where(c <= 70, c - 55, c - 87))
    ok = ((c >= 48) & (c <= 57)) | ((c >= 65) & (c <= 70)) | ((c >= 97) & (c <= 102))
    return digit, ok

  value, is_u = tf.zeros_like(flat), (flat == 92) & (char(1) == 117) & (rows_ahead[5:5 + n] == rows)
  for k in range(2, 6):
    digit, ok = hex_value(char(k))
    value, is_u = value * 16 + digit, is_u & ok
  value = tf.where(is_u, value, 0)
  # A high surrogate escape followed by a low one encodes one code point above U+FFFF.
  value_next = tf.concat([value[6:], tf.zeros([tf.minimum(6, n)], tf.int32)], 0)
  is_u_next = tf.concat([is_u[6:], tf.zeros([tf.minimum(6, n)], tf.bool)], 0)
  high = is_u & (value >= 0xD800) & (value < 0xDC00)
  same_row = rows_ahead[6:6 + n] == rows
  pair = high & same_row & is_u_next & (value_next >= 0xDC00) & (value_next < 0xE000)
  combined = 0x10000 + (value - 0xD800) * 0x400 + (value_next - 0xDC00)
  lone = is_u & (value >= 0xD800) & (value < 0xE000) & ~pair
  decoded = tf.where(pair, combined, tf.where(lone, 0xFFFD, value))
  # Drop the 5 characters after each escape's backslash, and all of a consumed low half.
  starts = tf.cast(is_u, tf.int32) + tf.concat([tf.zeros([6], tf.int32),
                                                tf.cast(pair, tf.int32)[:-6]], 0)[:n]
  ends = tf.concat([tf.zeros([6], tf.int32), tf.cast(is_u, tf.int32)[:-6]], 0)[:n]
  pair_ends = tf.concat([tf.zeros([12], tf.int32), tf.cast(pair, tf.int32)[:-12]], 0)[:n]
  inside = tf.cumsum(starts) - tf.cumsum(ends) - tf.cumsum(pair_ends)
  consumed = tf.concat([tf.zeros([6], tf.bool), pair[:-6]], 0)[:n]
  keep = (is_u & ~consumed) | (inside == 0)
  out = tf.where(is_u, decoded, tf.where(flat == ord(_PLACEHOLDER), 92, flat))
  kept = tf.RaggedTensor.from_value_rowids(tf.boolean_mask(out, keep), tf.boolean_mask(rows, keep),
                                           nrows=cps.nrows())
  return tf.strings.unicode_encode(kept, "UTF-8", errors="replace")


def jsonl_extract(lines: tf.Tensor, field: str) -> tuple[tf.Tensor, tf.Tensor]:
  """(text, found) for a batch of JSON lines: the string value of `"field"` ("" when
  absent or not a string) and whether it was there. The first occurrence of the key is
  used; nested objects are not told apart."""
  body = r'"' + re.escape(field) + r'"\s*:\s*"((?:[^"\\]|\\.)*)"'
  found = tf.strings.regex_full_match(lines, r".*?" + body + r".*")
  raw = tf.strings.regex_replace(lines, r"^.*?" + body + r".*$", r"\1")
  return tf.where(found, _unescape_json(raw), ""), found


def jsonl_field(lines: tf.Tensor, field: str) -> tf.Tensor:
  """The string value of `"field"` in each JSON line of a batch ("" when absent)."""
  return jsonl_extract(lines, field)[0]


# ---------------------------------------------------------------- bad records


_SKIPPED: dict[str, tf.Variable] = {}


def skipped_lines() -> dict[str, int]:
  """Bad records skipped with `data.skip_bad_lines=true`, per source, by the latest dataset
  built for it in this process (for training: since the process started), e.g.
  `{"data.train_files /data/*.jsonl": 3}`. Cheap to call; the trainer can log it."""
  return {name: int(v.numpy()) for name, v in _SKIPPED.items()}


def _skip_counter(name: str) -> tf.Variable:
  if name not in _SKIPPED:
    with tf.init_scope():
      _SKIPPED[name] = tf.Variable(0, dtype=tf.int64, trainable=False)
  _SKIPPED[name].assign(0)  # a rebuilt dataset (e.g. each eval pass) counts from zero
  return _SKIPPED[name]


def as_data_error(e: Exception) -> DataError | None:
  """The DataError raised in graph by a bad record (it reaches Python as a TensorFlow
  error); None for other errors. The CLI prints it as one line."""
  found = re.search(re.escape(_ERROR_START) + r"(.*?)" + re.escape(_ERROR_END), str(e), re.S)
  if not found:
    return None
  # The assertion prints the message C-escaped (quotes, non-ASCII bytes of file names).
  return DataError(codecs.escape_decode(found.group(1).encode())[0].decode("utf-8", "replace"))


# Every code point but the surrogates: RE2 compiles these ranges to exact UTF-8 byte
# sequences, so the match agrees with Python's strict decoding (overlong forms, encoded
# surrogates and values above U+10FFFF fail); it is 7x faster than a transcode.
_VALID_UTF8 = r"[\x{0}-\x{D7FF}\x{E000}-\x{10FFFF}]*"


def _is_utf8(s: tf.Tensor) -> tf.Tensor:
  return tf.strings.regex_full_match(s, _VALID_UTF8)


def _check_block(docs, bad, *, locate, why, counter: tf.Variable | None, name: str):
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
  crossed = (n_bad > 0) & ((before == 0) | (tf.bitwise.right_shift(total, 1) >= before))
  tf.cond(crossed, log, lambda: tf.constant(0))
  return tf.boolean_mask(docs, ~bad)


def _file_documents(path: tf.Tensor, skip: tf.Tensor, take: tf.Tensor, cfg: DataConfig, counter,
                    name: str) -> tf.data.Dataset:
  """The documents of records skip+1 .. skip+take of one file (take -1: to the end),
  checked in blocks that know their file and line numbers."""
  not_utf8 = " is not UTF-8"

  def check(i, block):
    def locate(kind):
      return lambda j: tf.strings.join([path, f": {kind} ",
                                        tf.strings.as_string(skip + i * CHECK_BLOCK + j + 1)])

    if cfg.source == "tfrecord":
      values = tf.io.parse_example(block, {cfg.tfrecord_feature: tf.io.VarLenFeature(tf.string)})
      values = tf.RaggedTensor.from_sparse(values[cfg.tfrecord_feature])
      docs = tf.strings.reduce_join(values[:, :1], axis=1)  # the feature's first value
      missing = values.row_lengths() == 0
      why = tf.where(missing, f" has no bytes feature {cfg.tfrecord_feature!r} "
                              "(data.tfrecord_feature)", not_utf8)
      return _check_block(docs, missing | ~_is_utf8(docs), locate=locate("record"), why=why,
                          counter=counter, name=name)
    valid = _is_utf8(block)
    if cfg.source == "jsonl":
      docs, found = jsonl_extract(tf.where(valid, block, ""), cfg.jsonl_field)
      blank = tf.strings.regex_full_match(block, r"\s*")  # passes on, as an empty document
      why = tf.where(valid, f" has no string field \"{cfg.jsonl_field}\" (data.jsonl_field)",
                     not_utf8)
      return _check_block(docs, ~blank & ~(found & valid), locate=locate("line"), why=why,
                          counter=counter, name=name)
    return _check_block(block, ~valid, locate=locate("line"), why=not_utf8, counter=counter,
                        name=name)

  records = tf.data.TFRecordDataset(path) if cfg.source == "tfrecord" else tf.data.TextLineDataset(path)
  return records.skip(skip).take(take).batch(CHECK_BLOCK).enumerate().map(check).unbatch()


def _read_files(paths: list[str], cfg: DataConfig, *, process_index: int, process_count: int,
                shuffle: bool, repeat: bool, seed: int, counter, name: str,
                ranges: list[tuple[int, int]] | None = None) -> tf.data.Dataset:
  """This host's documents: whole files when there are at least as many files as hosts
  (host i reads files i, i+P, ...), otherwise every P-th document of all files. The hosts'
  streams are disjoint and together cover the data; the order depends only on the seed.
  `ranges` gives (skip, take) records per file (default: all)."""
  file_level = len(paths) >= process_count
  ranges = ranges or [(0, -1)] * len(paths)
  mine = list(range(process_index, len(paths), process_count)) if file_level else range(len(paths))
  files = tf.data.Dataset.from_tensor_slices((
      [paths[i] for i in mine], [ranges[i][0] for i in mine], [ranges[i][1] for i in mine]))
  files = files.map(lambda p, s, t: (p, tf.cast(s, tf.int64), tf.cast(t, tf.int64)))
  if shuffle:
    # The same seed on every host: element-level sharding needs identical streams to split.
    files = files.shuffle(len(mine), seed=seed, reshuffle_each_iteration=True)
  if repeat:
    files = files.repeat()

  def read(path, skip, take):
    return _file_documents(path, skip, take, cfg, counter, name)

  if shuffle and len(mine) > 1:
    docs = files.interleave(read, cycle_length=min(FILE_CYCLE, len(mine)), block_length=16)
  else:  # evaluation reads the files in order, one after another
    docs = files.flat_map(read)
  if not file_level:
    docs = docs.shard(process_count, process_index)
  return docs


def _check_files(paths: list[str], pattern: str, key: str, cfg: DataConfig) -> None:
  """Fails early on files without documents (a repeated empty stream would hang forever)
  and on TFRecords without the feature. Reads only the start of files, and stops at the
  first one that has text."""
  if cfg.source == "tfrecord":
    return _check_tfrecords(paths, pattern, key, cfg)
  sizes, need = [], None
  if cfg.source == "jsonl":
    need = f'"{cfg.jsonl_field}"'.encode()
  for path in paths:
    with tf.io.gfile.GFile(path, "rb") as f:
      head = f.read(_TEXT_PROBE_BYTES)
    sizes.append(len(head))
    if head.strip() and (need is None or need in head):
      return
    if len(head) == _TEXT_PROBE_BYTES:
      return  # a big file: trust that text follows rather than read it all now
  if not any(sizes):
    raise DataError(f"all {len(paths)} files matching {pattern!r} ({key}) are empty")
  if need is not None:
    raise DataError(f"no line of the files matching {pattern!r} ({key}) has the field "
                    f"{need.decode()} (data.jsonl_field={cfg.jsonl_field!r})")
  raise DataError(f"the {len(paths)} files matching {pattern!r} ({key}) contain only whitespace")


def _check_tfrecords(paths: list[str], pattern: str, key: str, cfg: DataConfig) -> None:
  feature = cfg.tfrecord_feature
  for path in paths:
    try:
      first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
      raise DataError(f"{path} ({key}) is not a TFRecord file ({e.message.splitlines()[0]}); "
                      "data.source='tfrecord' reads files written by tf.io.TFRecordWriter") from None
    if first is None:
      continue  # an empty shard
    try:
      example = tf.train.Example.FromString(first.numpy())
    except Exception:  # noqa: BLE001 - protobuf's DecodeError has no stable import path
      raise DataError(f"the first record of {path} ({key}) is not a tf.train.Example") from None
    features = example.features.feature
    if feature not in features or features[feature].WhichOneof("kind") != "bytes_list":
      have = ", ".join(f"{k} ({v.WhichOneof('kind')})" for k, v in sorted(features.items()))
      raise DataError(f"the first record of {path} ({key}) has no bytes feature {feature!r}; "
                      f"it has: {have or 'no features'}; set data.tfrecord_feature")
    return
  raise DataError(f"all {len(paths)} files matching {pattern!r} ({key}) are empty")


# ---------------------------------------------------------------- TFDS


def tfds_builder(cfg: DataConfig):
  """The prepared TFDS builder of `data.tfds_name` (name[/config][:version]) in
  `data.tfds_data_dir`. Nothing is ever downloaded: unprepared data is a DataError."""
  import tensorflow_datasets as tfds  # noqa: PLC0415 - slow import, only for this source

  name, data_dir = cfg.tfds_name, cfg.tfds_data_dir or None
  where = f"data_dir {data_dir!r}" if data_dir else "the default TFDS data_dir (data.tfds_data_dir is empty)"
  fix = (f"prepare it offline with `{_BUILD_HINT}` (text/JSONL) or `tfds build` on a machine "
         "with internet, then set data.tfds_name and data.tfds_data_dir")
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise DataError(f"TFDS dataset {name!r} (data.tfds_name) is neither in {where} nor in the "
                    f"TFDS catalog; {fix}") from None
  except (ValueError, AssertionError) as e:  # a malformed name, an unknown config or version
    raise DataError(f"TFDS dataset {name!r} (data.tfds_name) in {where}: "
                    f"{str(e).splitlines()[0]}") from None
  if not builder.is_prepared():
    raise DataError(f"TFDS dataset {name!r} (data.tfds_name) is not prepared in {builder.data_dir} "
                    f"and is never downloaded at run time; {fix}")
  return builder


def _plain_text_shards(builder, key: str) -> bool:
  """True when the split is TFRecord shards of tf.train.Example with the text as a plain
  bytes feature `key` (what `t5x-like data build` writes). Those are read like
  data.source='tfrecord', parsed in blocks, from TFDS's own file instructions: `as_dataset`
  parses one example per call, which made the pipeline 4x slower on 2 cores."""
  import tensorflow_datasets as tfds  # noqa: PLC0415

  feature = builder.info.features[key]
  return (builder.info.file_format in (None, tfds.core.FileFormat.TFRECORD)
          and type(feature) is tfds.features.Text and feature.encoder is None)


def _read_tfds(cfg: DataConfig, split: str, *, process_index: int, process_count: int,
               shuffle: bool, repeat: bool, seed: int, counter, name: str) -> tf.data.Dataset:
  """This host's documents of a TFDS split: an even share of the examples
  (`tfds.even_splits`), so every example is read once per epoch for any host count."""
  import tensorflow_datasets as tfds  # noqa: PLC0415

  builder = tfds_builder(cfg)
  key = cfg.tfds_text_key
  features = builder.info.features
  if key not in features or getattr(features[key], "tf_dtype", None) != tf.string:
    have = ", ".join(f"{k} ({getattr(getattr(v, 'tf_dtype', None), 'name', type(v).__name__)})"
                     for k, v in features.items())
    raise DataError(f"TFDS dataset {cfg.tfds_name!r} has no string feature {key!r} "
                    f"(data.tfds_text_key); it has: {have}")
  try:
    total = builder.info.splits[split].num_examples
  except (ValueError, KeyError) as e:
    raise DataError(f"TFDS dataset {cfg.tfds_name!r}: split {split!r} "
                    f"(data.tfds_{'train' if repeat else 'eval'}_split): {e}") from None
  if total == 0:
    raise DataError(f"split {split!r} of TFDS dataset {cfg.tfds_name!r} is empty")
  share = tfds.split_for_jax_process(split, process_index=process_index, process_count=process_count)
  if builder.info.splits[share].num_examples == 0:  # more hosts than examples
    if repeat:  # a training stream would end at once
      raise DataError(f"split {split!r} of TFDS dataset {cfg.tfds_name!r} has {total} examples, "
                      f"fewer than the {process_count} hosts reading it")
    return tf.data.Dataset.from_tensor_slices(tf.constant([], tf.string))
  if _plain_text_shards(builder, key):
    instructions = builder.info.splits[share].file_instructions
    shard_cfg = dataclasses.replace(cfg, source="tfrecord", tfrecord_feature=key)
    return _read_files([os.fspath(i.filename) for i in instructions], shard_cfg, process_index=0,
                       process_count=1, shuffle=shuffle, repeat=repeat, seed=seed, counter=counter,
                       name=name, ranges=[(i.skip, i.take) for i in instructions])
  read_config = tfds.ReadConfig(
      shuffle_seed=seed, shuffle_reshuffle_each_iteration=True, try_autocache=False,
      skip_prefetch=True, add_tfds_id=counter is None,
      # Evaluation reads the shards in order; training interleaves a few, like files.
      interleave_cycle_length=FILE_CYCLE if shuffle else 1)
  ds = builder.as_dataset(split=share, shuffle_files=shuffle, read_config=read_config)
  wanted = [key] + (["tfds_id"] if counter is None else [])
  ds = ds.map(lambda ex: {k: ex[k] for k in wanted})  # other features may not batch
  if repeat:
    ds = ds.repeat()

  def check(block):
    def locate(j):  # tfds_id names the shard file and the record in it
      return tf.strings.join([f"TFDS dataset {cfg.tfds_name} [{split}] record ", block["tfds_id"][j]])

    docs = block[key]
    return _check_block(docs, ~_is_utf8(docs), locate=locate, why=" is not UTF-8", counter=counter,
                        name=name)

  return ds.batch(CHECK_BLOCK).map(check).unbatch()


# ---------------------------------------------------------------- any source


def read_documents(cfg: DataConfig, *, files: str, split: str, key: str, process_index: int = 0,
                   process_count: int = 1, shuffle: bool = True, repeat: bool = True,
                   seed: int = 0) -> tf.data.Dataset:
  """This host's documents (scalar strings) of one source, shuffled with a seeded buffer
  when `shuffle`. `files` is the glob for file sources, `split` the TFDS split, `key` the
  config key that set them (named in errors and in `skipped_lines()`)."""
  if cfg.source == "tfds":
    name = f"{key} {cfg.tfds_name}[{split}]"
  else:
    paths = list_files(files, key)
    _check_files(paths, files, key, cfg)
    name = f"{key} {files}"
  counter = _skip_counter(name) if cfg.skip_bad_lines else None
  kw = dict(process_index=process_index, process_count=process_count, shuffle=shuffle,
            repeat=repeat, seed=seed, counter=counter, name=name)
  if cfg.source == "tfds":
    docs = _read_tfds(cfg, split, **kw)
  else:
    docs = _read_files(paths, cfg, **kw)
  if shuffle and cfg.shuffle_buffer > 1:
    docs = docs.shuffle(cfg.shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
  return docs


def needs_external_state(cfg: DataConfig) -> bool:
  """True when the pipeline holds a skip counter: a variable that tf.data cannot save with
  the iterator (the count restarts with the process; the stream itself is restored)."""
  return cfg.skip_bad_lines or any(m.get("skip_bad_lines") for m in cfg.mixture)


__all__ = ["CHECK_BLOCK", "FILE_CYCLE", "as_data_error", "jsonl_extract", "jsonl_field",
           "needs_external_state", "read_documents", "skipped_lines", "tfds_builder"]
