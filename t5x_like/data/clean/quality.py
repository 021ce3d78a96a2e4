"""Document quality filters after C4 (Raffel et al. 2020) and Gopher's MassiveText rules
(Rae et al. 2021). `failed_filter` returns the name of the first filter a document fails
(the name the report counts it under) or None; a filter is off when its threshold is None.

Words are whitespace-separated tokens; lines are the document's non-blank lines. The
repetition measures are Gopher's: the fraction of lines (and of their characters) that
repeat an earlier line, the fraction of characters covered by the most frequent word
n-gram (n = 2..4), and the fraction of characters covered by n-grams that occur more than
once (n = 5..10).
"""

from __future__ import annotations

import itertools
import re

import numpy as np

from t5x_like.data.clean.options import CleanOptions

# Filter names in the order they run (the cheapest first): the report's rows.
FILTERS = ("min_words", "max_words", "mean_word_length", "symbol_ratio", "alpha_words",
           "line_punct", "dup_lines", "top_ngram", "dup_ngram", "stop_words")
_WITH_LETTER = re.compile(r"\S*[^\W\d_]\S*")
_END_PUNCT = (".", "!", "?", '"', "'", "\u201d", "\u2019", "\u3002", "\uff01", "\uff1f", ":", ")")


def _dup_line_fractions(lines: list[str]) -> tuple[float, float]:
  seen, dup, dup_chars = set(), 0, 0
  for line in lines:
    if line in seen:
      dup += 1
      dup_chars += len(line)
    seen.add(line)
  total_chars = sum(len(x) for x in lines) or 1
  return dup / max(1, len(lines)), dup_chars / total_chars


def word_ids(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
  """(id per word, length per word): n-grams are then compared as rolling hashes of ids."""
  index: dict[str, int] = {}
  ids = np.fromiter(map(index.setdefault, words, itertools.count()), dtype=np.uint64, count=len(words))
  return ids, np.fromiter(map(len, words), dtype=np.int64, count=len(words))


class NGrams:
  """The n-grams of a word sequence as 64-bit rolling hashes of word ids (n = 1, 2, ...
  in turn; a collision needs two different n-grams with one 64-bit hash), with the two
  Gopher measures for the current n."""

  def __init__(self, words: list[str]):
    self.ids, self.lengths = word_ids(words)
    self.total = int(self.lengths.sum()) or 1
    self.n, self.hashes = 1, self.ids.copy()

  def advance_to(self, n: int) -> None:
    while self.n < n and len(self.hashes):
      self.n += 1
      self.hashes = self.hashes[:-1] * np.uint64(1_000_003) + self.ids[self.n - 1:]

  def _counts(self) -> np.ndarray:
    """How often each position's n-gram occurs (np.unique's work, without its overhead:
    this runs 9 times a document)."""
    order = np.argsort(self.hashes)
    ordered = self.hashes[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1], [True])))
    sizes = np.diff(starts)
    out = np.empty(len(order), dtype=np.int64)
    out[order] = np.repeat(sizes, sizes)
    return out

  def top_fraction(self) -> float:
    """Characters of the most frequent n-gram's occurrences over all word characters."""
    if len(self.hashes) < 2:
      return 0.0
    counts = self._counts()
    first = int(counts.argmax())  # the first position of (one of) the most frequent n-grams
    if counts[first] < 2:
      return 0.0
    return int(counts[first]) * int(self.lengths[first:first + self.n].sum()) / self.total

  def dup_fraction(self) -> float:
    """Characters of the words covered by an n-gram occurring twice or more (each word
    counted once) over all word characters."""
    if len(self.hashes) < 2:
      return 0.0
    starts = np.flatnonzero(self._counts() > 1)
    if not len(starts):
      return 0.0
    edges = np.zeros(len(self.ids) + 1, dtype=np.int64)
    np.add.at(edges, starts, 1)
    np.add.at(edges, starts + self.n, -1)
    covered = np.cumsum(edges[:-1]) > 0
    return int(self.lengths[covered].sum()) / self.total


def top_ngram_fraction(words: list[str], n: int) -> float:
  grams = NGrams(words)
  grams.advance_to(n)
  return grams.top_fraction() if len(words) >= n else 0.0


def dup_ngram_fraction(words: list[str], n: int) -> float:
  grams = NGrams(words)
  grams.advance_to(n)
  return grams.dup_fraction() if len(words) >= n else 0.0


def failed_filter(text: str, o: CleanOptions) -> str | None:
  words = text.split()
  n = len(words)
  if o.min_words is not None and n < o.min_words:
    return "min_words"
  if o.max_words is not None and n > o.max_words:
    return "max_words"
  if n == 0:
    return "min_words"
  mean = sum(map(len, words)) / n
  if (o.min_mean_word_len is not None and mean < o.min_mean_word_len) or \
     (o.max_mean_word_len is not None and mean > o.max_mean_word_len):
    return "mean_word_length"
  if o.max_symbol_ratio is not None:
    symbols = text.count("#") + text.count("...") + text.count("\u2026")
    if symbols / n > o.max_symbol_ratio:
      return "symbol_ratio"
  if o.min_alpha_words is not None:
    alpha = len(_WITH_LETTER.findall(text))  # one match per word holding a letter
    if alpha / n < o.min_alpha_words:
      return "alpha_words"
  lines = [x.strip() for x in text.split("\n") if x.strip()]
  if o.min_line_punct:
    ended = sum(x.endswith(_END_PUNCT) for x in lines)
    if ended / max(1, len(lines)) < o.min_line_punct:
      return "line_punct"
  if len(lines) > 1 and (o.max_dup_lines is not None or o.max_dup_line_chars is not None):
    frac, chars = _dup_line_fractions(lines)
    if (o.max_dup_lines is not None and frac > o.max_dup_lines) or \
       (o.max_dup_line_chars is not None and chars > o.max_dup_line_chars):
      return "dup_lines"
  lower = [w.lower() for w in words]
  if o.max_top_ngram or o.max_dup_ngram:
    grams = NGrams(lower)
    for k, limit in sorted(o.max_top_ngram or ()):
      grams.advance_to(k)
      if n >= k and grams.top_fraction() > limit:
        return "top_ngram"
    for k, limit in sorted(o.max_dup_ngram or ()):
      if k < grams.n:  # the hashes only grow longer
        grams = NGrams(lower)
      grams.advance_to(k)
      if n >= k and grams.dup_fraction() > limit:
        return "dup_ngram"
  if o.min_stop_words is not None and o.stop_words:
    stop = set(o.stop_words)
    if len(stop.intersection(lower)) < min(o.min_stop_words, len(stop)):
      return "stop_words"
  return None


__all__ = ["FILTERS", "dup_ngram_fraction", "failed_filter", "top_ngram_fraction"]
