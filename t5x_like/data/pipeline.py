"""tf.data input pipelines: files -> host shard -> shuffle -> tokenize (in graph) ->
objective -> batch.

Everything stays in the TensorFlow graph (no `from_generator`, no `py_function`), so
`tf.train.Checkpoint(iterator=it)` saves the exact position, shuffle buffers included, and
a resumed run continues with the next batch. With a fixed seed and host count the stream
of batches is a pure function of the files.
"""

from __future__ import annotations

import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from t5x_like.config import DataConfig  # noqa: E402
from t5x_like.data.objectives import (  # noqa: E402
  CHUNKED_OBJECTIVES,
  OBJECTIVES,
  causal_lm,
  causal_lm_chunked,
  causal_lm_features,
)
from t5x_like.data.tokenizer import DataError, Tokenizer, list_files  # noqa: E402

TOKENIZE_BATCH = 256  # lines tokenized per call of the in-graph tokenizer
FILE_CYCLE = 4  # files read at once (interleaved) when training
_TEXT_PROBE_BYTES = 1 << 16  # bytes read per file when checking that the files hold text


# ---------------------------------------------------------------- sources


def _read_lines(paths: list[str], *, process_index: int, process_count: int, shuffle: bool,
                repeat: bool, seed: int, shuffle_buffer: int) -> tf.data.Dataset:
  """This host's lines: whole files when there are at least as many files as hosts (host i
  reads files i, i+P, ...), otherwise every P-th line of all files. The hosts' streams are
  disjoint and together cover the data; the order depends only on the seed."""
  file_level = len(paths) >= process_count
  mine = paths[process_index::process_count] if file_level else paths
  files = tf.data.Dataset.from_tensor_slices(mine)
  if shuffle:
    # The same seed on every host: element-level sharding needs identical streams to split.
    files = files.shuffle(len(mine), seed=seed, reshuffle_each_iteration=True)
  if repeat:
    files = files.repeat()
  if shuffle and len(mine) > 1:
    lines = files.interleave(tf.data.TextLineDataset, cycle_length=min(FILE_CYCLE, len(mine)),
                             block_length=16)
  else:  # evaluation reads the files in order, one after another
    lines = files.flat_map(tf.data.TextLineDataset)
  if not file_level:
    lines = lines.shard(process_count, process_index)
  if shuffle and shuffle_buffer > 1:
    lines = lines.shuffle(shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
  return lines


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


def jsonl_field(lines: tf.Tensor, field: str) -> tf.Tensor:
  """The string value of `"field"` in each JSON line of a batch ("" when absent or not a
  string). The first occurrence of the key is used; nested objects are not told apart."""
  body = r'"' + re.escape(field) + r'"\s*:\s*"((?:[^"\\]|\\.)*)"'
  found = tf.strings.regex_full_match(lines, r".*?" + body + r".*")
  raw = tf.strings.regex_replace(lines, r"^.*?" + body + r".*$", r"\1")
  return tf.where(found, _unescape_json(raw), "")


# ---------------------------------------------------------------- tokenization


def tokenized_chunks(lines: tf.data.Dataset, tokenizer: Tokenizer, *, source: str = "text",
                     jsonl_field_name: str = "text", num_parallel_calls: int = -1
                     ) -> tf.data.Dataset:
  """Ragged int32 chunks `[n_docs, (tokens)]` of up to `TOKENIZE_BATCH` documents, EOS
  appended to each. Documents without tokens (blank lines, JSON lines without the field)
  are dropped here, vectorised, rather than by a per-line filter."""
  sp = tokenizer.tf_tokenizer
  eos = tokenizer.eos_id

  def tokenize(batch):
    text = jsonl_field(batch, jsonl_field_name) if source == "jsonl" else batch
    ids = sp.tokenize(text)
    ids = tf.ragged.boolean_mask(ids, ids.row_lengths() > 0)
    eos_col = tf.fill([ids.nrows(), 1], tf.constant(eos, tf.int32))
    return tf.concat([ids, eos_col], axis=1)

  calls = tf.data.AUTOTUNE if num_parallel_calls < 0 else max(num_parallel_calls, 1)
  return lines.batch(TOKENIZE_BATCH).map(tokenize, num_parallel_calls=calls, deterministic=True)


SOURCES = ("synthetic", "text", "jsonl")


# ---------------------------------------------------------------- the dataset


def _config_key(cfg: DataConfig, files: str, repeat: bool) -> str:
  if files == cfg.eval_files and files != cfg.train_files:
    return "data.eval_files"
  if files == cfg.train_files:
    return "data.train_files"
  return "data.train_files" if repeat else "data.eval_files"


def _check_has_text(paths: list[str], pattern: str, key: str, cfg: DataConfig) -> None:
  """Fails early on files without documents: a repeated empty stream would hang forever.
  Reads only the start of files, and stops at the first one that has text."""
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


def _pad_batch(batch: dict, batch_size: int) -> dict:
  """Pads a final short batch with all-zero rows (segment 0, loss weight 0)."""

  def pad(x):
    missing = batch_size - tf.shape(x)[0]
    out = tf.pad(x, tf.concat([[[0, missing]], tf.zeros([x.shape.rank - 1, 2], tf.int32)], 0))
    return tf.ensure_shape(out, [batch_size] + x.shape[1:].as_list())

  return {k: pad(v) for k, v in batch.items()}


def make_dataset(data_cfg: DataConfig, *, files: str, tokenizer_path: str, batch_size: int,
                 process_index: int = 0, process_count: int = 1, shuffle: bool = True,
                 repeat: bool = True, seed: int | None = None) -> tf.data.Dataset:
  """Batches `{feature: [batch_size, seq_len]}` for this host; `batch_size` is per host.

  Training (`repeat=True`) streams forever. Evaluation (`repeat=False`) reads each of this
  host's documents once and pads the last batch with all-zero rows, so every batch has the
  same shape and the eval step compiles once.
  """
  cfg = data_cfg
  seed = cfg.seed if seed is None else seed
  if cfg.objective not in OBJECTIVES:
    raise DataError(f"objective {cfg.objective} is not supported yet "
                    f"(available: {', '.join(sorted(OBJECTIVES))})")
  if cfg.source not in SOURCES:
    raise DataError(f"data.source={cfg.source!r} is not supported by the file pipeline yet "
                    f"(available: {', '.join(SOURCES)})")
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must be in [0, {process_count})")
  key = _config_key(cfg, files, repeat)
  paths = list_files(files, key)
  _check_has_text(paths, files, key, cfg)
  tokenizer = Tokenizer(tokenizer_path)

  # host_split=rows: read the whole stream as one host would, batch globally, keep a slice.
  by_rows = cfg.host_split == "rows" and process_count > 1
  host_batch, slice_index = batch_size, process_index
  if by_rows:
    batch_size, process_index, process_count = batch_size * process_count, 0, 1
  lines = _read_lines(paths, process_index=process_index, process_count=process_count,
                      shuffle=shuffle, repeat=repeat, seed=seed,
                      shuffle_buffer=cfg.shuffle_buffer)
  chunks = tokenized_chunks(lines, tokenizer, source=cfg.source,
                            jsonl_field_name=cfg.jsonl_field,
                            num_parallel_calls=cfg.num_parallel_calls)
  if cfg.objective in CHUNKED_OBJECTIVES:
    blocks = CHUNKED_OBJECTIVES[cfg.objective](chunks, cfg, tokenizer=tokenizer, seed=seed)
    ds = blocks.rebatch(batch_size, drop_remainder=repeat)
  else:
    rows = OBJECTIVES[cfg.objective](chunks.unbatch(), cfg, tokenizer=tokenizer, seed=seed)
    ds = rows.batch(batch_size, drop_remainder=repeat)
  if not repeat:
    ds = ds.map(lambda b: _pad_batch(b, batch_size))
  if by_rows:
    lo = slice_index * host_batch
    ds = ds.map(lambda b: {k: v[lo:lo + host_batch] for k, v in b.items()})

  options = tf.data.Options()
  options.deterministic = True
  # TensorFlow's default thread pool: on 2 cores it gave about twice the throughput of a
  # one-thread pool (scripts/bench_data.py). While training, the pipeline idles once
  # the prefetch buffer is full, so its CPU share is set by the consumer, not the pool.
  return ds.with_options(options).prefetch(2)


__all__ = ["CHUNKED_OBJECTIVES", "OBJECTIVES", "SOURCES", "TOKENIZE_BATCH", "DataError",
           "causal_lm", "causal_lm_chunked", "causal_lm_features", "jsonl_field", "make_dataset",
           "tokenized_chunks"]
