"""Each quality filter removes what it should and keeps a clean paragraph."""

import dataclasses

import pytest
from clean_corpus import CLEAN, vocabulary

from t5x_like.data.clean.options import CleanOptions, with_settings, without_quality
from t5x_like.data.clean.quality import dup_ngram_fraction, failed_filter, top_ngram_fraction

OPTS = CleanOptions()


def test_a_clean_paragraph_passes_every_default_filter():
  assert failed_filter(CLEAN, OPTS) is None
  second = ("Next spring the library will also open a small cafe near the entrance, which the "
            "members hope will bring in more visitors from the neighbouring villages.")
  assert failed_filter(CLEAN + "\n" + second, OPTS) is None


# (filter name, a document it must remove); each is otherwise like CLEAN.
BAD = {
    "min_words": "The cat sat on the mat and that was all.",
    "max_words": " ".join([CLEAN] * 2000),  # caught by max_words before any repetition filter
    "mean_word_length": " ".join(["a I to of an"] * 20) + " the and with.",
    "symbol_ratio": CLEAN + " " + " ".join(["#tag"] * 12),
    "alpha_words": CLEAN + " " + " ".join(str(i) for i in range(100, 140)),
    "dup_lines": "\n".join([CLEAN, "Click here to subscribe to the newsletter today.",
                            "Click here to subscribe to the newsletter today.",
                            "Click here to subscribe to the newsletter today."]),
    "top_ngram": CLEAN + " " + " ".join(["best price"] * 30),
    "dup_ngram": CLEAN + " " + CLEAN[:150],
    "stop_words": " ".join(vocabulary()[100:160]) + ".",  # 60 distinct words, none a stop word
}


@pytest.mark.parametrize("name", list(BAD))
def test_each_filter_removes_its_bad_document(name):
  assert failed_filter(BAD[name], OPTS) == name


def test_line_punctuation_filter_is_opt_in_and_works():
  lines = "\n".join([CLEAN] + ["Home", "About us", "Contact", "Privacy policy"])
  assert failed_filter(lines, OPTS) is None  # off by default: min_line_punct=0
  strict = dataclasses.replace(OPTS, min_line_punct=0.5)
  assert failed_filter(lines, strict) == "line_punct"
  assert failed_filter(CLEAN, strict) is None


def test_filters_switch_off():
  off = without_quality(OPTS)
  for text in BAD.values():
    assert failed_filter(text, off) is None
  assert failed_filter(BAD["min_words"], with_settings(OPTS, ["min_words=5"])) is None


def test_repetition_measures_match_hand_counts():
  words = "a b a b a b c".split()
  # "a b" occurs 3 times: 6 of 7 word characters.
  assert top_ngram_fraction(words, 2) == pytest.approx(6 / 7)
  # "a b a" repeats (at 0 and 2), so does "b a b" (at 1 and 3): words 0..5 are covered.
  assert dup_ngram_fraction(words, 3) == pytest.approx(6 / 7)
  assert dup_ngram_fraction("x y z w".split(), 2) == 0.0


def test_bad_settings_are_one_line_errors():
  from t5x_like.errors import ConfigError
  with pytest.raises(ConfigError, match="did you mean min_words"):
    with_settings(OPTS, ["min_word=3"])
  with pytest.raises(ConfigError, match="not a valid value"):
    with_settings(OPTS, ["min_words=many"])
  with pytest.raises(ConfigError, match="jaccard"):
    with_settings(OPTS, ["jaccard=1.5"])
  # none turns a filter off; a setting that is not a filter cannot be off (it crashed, or for
  # seed made MinHash random and the output no longer reproducible).
  assert with_settings(OPTS, ["min_words=none"]).min_words is None
  for name in ("jaccard", "shingle", "seed", "num_perm", "shard_docs"):
    with pytest.raises(ConfigError, match=f"{name} cannot be turned off"):
      with_settings(OPTS, [f"{name}=none"])
  assert with_settings(OPTS, ["languages=none", "max_top_ngram=none"]).max_top_ngram == ()  # list filters off
  for bad in ("max_symbol_ratio=nan", "min_alpha_words=inf"):
    with pytest.raises(ConfigError, match="not a valid value"):
      with_settings(OPTS, [bad])
