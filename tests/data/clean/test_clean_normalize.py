"""Normalisation: NFKC, invisible characters, whitespace and invalid UTF-8."""

import unicodedata

from clean_corpus import CLEAN

from t5x_like.data.clean.normalize import decode, normalize


def test_a_clean_paragraph_is_unchanged():
  assert normalize(CLEAN) == CLEAN


def test_nfkc_folds_compatibility_forms():
  assert normalize("ﬁne ＡＢＣ ①") == unicodedata.normalize("NFKC", "ﬁne ＡＢＣ ①") == "fine ABC 1"


def test_control_and_invisible_characters_go():
  assert normalize("a\x00b\x07c\u200bd\ufeffe\u00adf\ufffdg") == "abcdefg"


def test_whitespace_runs_collapse_and_lines_are_stripped():
  assert normalize("  a \t b  \r\n\n\n\n  c  \rd ") == "a b\n\nc\nd"


def test_invalid_utf8_is_dropped_or_replaced():
  assert decode(b"ok \xff", "drop") is None
  assert decode(b"ok \xff", "replace") == "ok \ufffd"
  assert normalize(decode(b"ok \xff", "replace")) == "ok"
  assert decode("caf\u00e9".encode(), "drop") == "caf\u00e9"
