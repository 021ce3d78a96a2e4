"""One line of a JSONL file as the project reads it everywhere outside tf.data (cleaning,
stats, `data build`, tokenizer training, task files, infer/score inputs): a UTF-8 byte
order mark before the line is ignored (Windows tools write one at the start of a file),
and a string holding a lone UTF-16 surrogate escape (`"\\ud83d"` without its pair) is an
error like any malformed line. Python's json module accepts such a string, but it is not
text: it cannot be written as UTF-8 again, so it would crash the writer later, far from
the line that caused it."""

from __future__ import annotations

import json
import re
from typing import Any

_BOM = "\ufeff"
# A \uD800-\uDFFF escape; a proper pair passes the encode check below.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class NotText(json.JSONDecodeError):
  """A line whose strings hold a lone surrogate escape: valid JSON, but not Unicode text."""


def loads(line: str | bytes) -> Any:
  """json.loads of one line, or json.JSONDecodeError (a ValueError with .msg)."""
  if isinstance(line, bytes):
    line = line.decode("utf-8")  # UnicodeDecodeError (a ValueError) for bytes that are not UTF-8
  line = line.removeprefix(_BOM)
  value = json.loads(line)
  if "\\u" in line and _SURROGATE_ESCAPE.search(line):
    try:
      json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
      raise NotText("a lone UTF-16 surrogate escape (such as \\ud83d without its pair), which is "
                                 f"not a character ({e.object[e.start:e.end]!a})", line,
                                 _SURROGATE_ESCAPE.search(line).start()) from None
  return value


__all__ = ["NotText", "loads"]
