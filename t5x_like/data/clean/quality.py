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

import collections

from t5x_like.data.clean.options import CleanOptions

# Filter names in the order they run (the cheapest first): the report's rows.
FILTERS = ("min_words", "max_words", "mean_word_length", "symbol_ratio", "alpha_words",
           "line_punct", "dup_lines", "top_ngram", "dup_ngram", "stop_words")
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


def top_ngram_fraction(words: list[str], n: int) -> float:
  """Characters of the most frequent n-gram's occurrences over all word characters."""
  if len(words) < n:
    return 0.0
  counts = collections.Counter(zip(*(words[i:] for i in range(n)), strict=False))
  gram, count = counts.most_common(1)[0]
  if count < 2:
    return 0.0
  return count * sum(len(w) for w in gram) / (sum(len(w) for w in words) or 1)


def dup_ngram_fraction(words: list[str], n: int) -> float:
  """Characters of the words covered by any n-gram occurring twice or more (each word
  counted once), over all word characters."""
  if len(words) < n:
    return 0.0
  grams = list(zip(*(words[i:] for i in range(n)), strict=False))
  counts = collections.Counter(grams)
  if len(counts) == len(grams):
    return 0.0
  covered = [False] * len(words)
  for i, gram in enumerate(grams):
    if counts[gram] > 1:
      covered[i:i + n] = [True] * n
  return sum(len(w) for w, c in zip(words, covered, strict=True) if c) / (sum(len(w) for w in words) or 1)


def failed_filter(text: str, o: CleanOptions) -> str | None:
  words = text.split()
  n = len(words)
  if o.min_words is not None and n < o.min_words:
    return "min_words"
  if o.max_words is not None and n > o.max_words:
    return "max_words"
  if n == 0:
    return "min_words"
  mean = sum(len(w) for w in words) / n
  if (o.min_mean_word_len is not None and mean < o.min_mean_word_len) or \
     (o.max_mean_word_len is not None and mean > o.max_mean_word_len):
    return "mean_word_length"
  if o.max_symbol_ratio is not None:
    symbols = text.count("#") + text.count("...") + text.count("\u2026")
    if symbols / n > o.max_symbol_ratio:
      return "symbol_ratio"
  if o.min_alpha_words is not None:
    alpha = sum(any(c.isalpha() for c in w) for w in words)
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
  for k, limit in o.max_top_ngram or ():
    if top_ngram_fraction(lower, k) > limit:
      return "top_ngram"
  for k, limit in o.max_dup_ngram or ():
    if dup_ngram_fraction(lower, k) > limit:
      return "dup_ngram"
  if o.min_stop_words is not None and o.stop_words:
    stop = set(o.stop_words)
    if len(stop.intersection(lower)) < min(o.min_stop_words, len(stop)):
      return "stop_words"
  return None


__all__ = ["FILTERS", "dup_ngram_fraction", "failed_filter", "top_ngram_fraction"]
