"""Unicode normalisation: NFKC, control and invisible characters, U+FFFD, whitespace.

Invalid UTF-8 is decided before this step (`decode`): by default such a document is
dropped and counted (`encoding` in the report), since a byte-level corruption rarely hits
one character only; `bad_utf8=replace` keeps it with U+FFFD in place of the bad bytes,
and this step then removes those characters (also what mojibake from an upstream
decode leaves behind).
"""

from __future__ import annotations

import re
import unicodedata

# Characters that separate words or lines though they are controls: a space or a newline,
# not nothing (deleting U+0085 NEL would join the words on either side).
_SEPARATORS = {"\x0b": " ", "\x0c": " ", "\x85": "\n", "\u2028": "\n", "\u2029": "\n",
               "\ufffd": " "}  # a replaced bad byte may have stood between words
# Cc (control) but newline and tab, and the Cf characters that are invisible noise in
# web text: zero-width space, word joiner, BOM, soft hyphen, bidi marks. The zero-width
# (non-)joiners U+200C/U+200D stay: they are spelling in Persian and Indic scripts and
# hold emoji sequences together.
_INVISIBLE = "".join(chr(c) for c in range(32) if chr(c) not in "\n\t" and chr(c) not in _SEPARATORS) + \
    "\x7f" + "".join(chr(c) for c in range(0x80, 0xA0) if chr(c) not in _SEPARATORS) + \
    "\u00ad\u200b\u200e\u200f\u2060\ufeff"
_DROP = str.maketrans({**dict.fromkeys(map(ord, _INVISIBLE)), **{ord(k): v for k, v in _SEPARATORS.items()}})
_SPACES = re.compile(r"[^\S\n]+")  # whitespace other than newlines
_BLANK_LINES = re.compile(r"\n\s*\n\s*(?:\n\s*)+")


def decode(raw: bytes | str, bad_utf8: str) -> str | None:
  """The text of a record; None when it is not UTF-8 and `bad_utf8` is drop."""
  if isinstance(raw, str):
    return raw
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError:
    return raw.decode("utf-8", "replace") if bad_utf8 == "replace" else None


def normalize(text: str) -> str:
  """NFKC, invisible characters removed, runs of spaces/tabs one space, lines stripped,
  at most one blank line in a row; "\\r\\n" and "\\r" become "\\n"."""
  text = unicodedata.normalize("NFKC", text.replace("\r\n", "\n").replace("\r", "\n"))
  text = text.translate(_DROP)
  text = _SPACES.sub(" ", text)
  if "\n" in text:
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _BLANK_LINES.sub("\n\n", text)
  return text.strip()


__all__ = ["decode", "normalize"]
