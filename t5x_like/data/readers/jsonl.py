"""JSON lines: the document is one string field of each line's object (`data.jsonl.field`).

The field is found and its escapes decoded with TensorFlow string ops, in graph, so the
stream stays checkpointable (no `py_function`): a regex takes the first `"field": "..."`
string of the line, then the escapes are decoded, `\\uXXXX` and surrogate pairs included.
Nested objects are not told apart, so the first occurrence of the key wins.
"""

from __future__ import annotations

import json
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from t5x_like.data.readers import checks  # noqa: E402
from t5x_like.data.readers.files import NOT_UTF8, FileReader  # noqa: E402

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


class JsonlReader(FileReader):
  def records(self, path):
    return tf.data.TextLineDataset(path)

  def decode(self, block):
    field = self.cfg.jsonl.field
    valid = checks.is_utf8(block)
    docs, found = jsonl_extract(tf.where(valid, block, ""), field)
    blank = tf.strings.regex_full_match(block, r"\s*")  # passes on, as an empty document
    why = tf.where(valid, f" has no string field \"{field}\" ({self.key_prefix}jsonl.field)", NOT_UTF8)
    return docs, ~blank & ~(found & valid), why

  @property
  def missing(self) -> str:
    field = self.cfg.jsonl.field
    return f': no line has a non-blank string field "{field}" ({self.key_prefix}jsonl.field={field!r})'

  def usable(self, record: bytes) -> bool:
    if f'"{self.cfg.jsonl.field}"'.encode() not in record:
      return False
    try:
      value = json.loads(record)
    except ValueError:  # not JSON, or not UTF-8
      return False
    return isinstance(value, dict) and isinstance(value.get(self.cfg.jsonl.field), str) \
        and bool(value[self.cfg.jsonl.field].strip())


__all__ = ["JsonlReader", "jsonl_extract"]
