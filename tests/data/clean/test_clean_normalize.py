"""Normalisation: NFKC, invisible characters, whitespace and invalid UTF-8."""

import unicodedata

from clean_corpus import CLEAN

from t5x_like.data.clean.normalize import decode, normalize


def test_a_clean_paragraph_is_unchanged():
  assert normalize(CLEAN) == CLEAN


def test_nfkc_folds_compatibility_forms():
  assert normalize("ﬁne ＡＢＣ ①") == unicodedata.normalize("NFKC", "ﬁne ＡＢＣ ①") == "fine ABC 1"


def test_control_and_invisible_characters_go():
  assert normalize("a\x00b\x07c\u200bd\ufeffe\u00adfg") == "abcdefg"
  # U+FFFD (a bad byte replaced) may have stood between words: it parts them
  assert normalize("two\ufffdwords \ufffd end") == "two words end"


def test_whitespace_runs_collapse_and_lines_are_stripped():
  assert normalize("  a \t b  \r\n\n\n\n  c  \rd ") == "a b\n\nc\nd"


def test_invalid_utf8_is_dropped_or_replaced():
  assert decode(b"ok \xff", "drop") is None
  assert decode(b"ok \xff", "replace") == "ok \ufffd"
  assert normalize(decode(b"ok \xff", "replace")) == "ok"
  assert decode("caf\u00e9".encode(), "drop") == "caf\u00e9"


def test_joiners_stay_and_separator_controls_separate():
  """U+200C is spelling in Persian (mi + ZWNJ + khaham), U+200D holds an emoji family
  together; NEL, line/paragraph separators, VT and FF part words instead of joining them."""
  persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
  family = "\U0001F468\u200d\U0001F469\u200d\U0001F467"
  assert normalize(persian) == persian and normalize(family) == family
  assert normalize("c\x85d e\u2028f g\u2029h") == "c\nd e\nf g\nh"
  assert normalize("a\x0bb\x0cc") == "a b c"
