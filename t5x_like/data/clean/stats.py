"""`t5x-like data stats`: what a corpus holds, before or after `data clean`.

Documents, characters, words, tokens (with a SentencePiece model), length percentiles and
a log-scale histogram, the top domains (from a `url` field) and sources (a `source`
field), the exact duplicate rate (documents whose whitespace-normalised text occurred
before), the language mix (when py3langid is installed; on a sample of 2,000 documents)
and a PNG of the length distributions (matplotlib, Agg backend).
"""

from __future__ import annotations

import collections
import hashlib
import json
import urllib.parse

import numpy as np

from t5x_like.data import json_lines
from t5x_like.data.clean import inputs, language
from t5x_like.data.clean.normalize import decode

_LANG_SAMPLE = 2000


def _texts(patterns: list[str], fmt: str, field: str, skipped: list):
  """Yields (text, record) per document; records without the field are counted apart, and
  files skipped whole (empty, binary) are appended to `skipped` as "PATH (why)"."""
  units, fmt = inputs.list_units(patterns, fmt)
  for i, unit in enumerate(units):
    why = inputs.probe(unit)
    if why:
      skipped.append(f"{unit.path} ({why})")
      continue
    for _, raw in inputs.read_unit(i, unit, fmt, "line"):
      text = decode(raw, "replace")
      if fmt != "jsonl":
        yield text, None
        continue
      try:
        record = json_lines.loads(text)
      except ValueError:
        yield None, None
        continue
      value = record.get(field) if isinstance(record, dict) else None
      yield (value, record) if isinstance(value, str) else (None, None)


def corpus_stats(patterns: list[str], *, fmt: str = "auto", field: str = "text", tokenizer: str = "",
                 plot: str = "", json_path: str = "", top: int = 10) -> dict:
  sp = None
  if tokenizer:
    from t5x_like.data.tokenizer import Tokenizer

    sp = Tokenizer(tokenizer).sp  # a missing or broken model is one line
  chars, words, tokens = [], [], []
  domains, sources, langs = collections.Counter(), collections.Counter(), collections.Counter()
  seen, dups, unreadable, skipped = set(), 0, 0, []
  rng = np.random.default_rng(0)
  for text, record in _texts(patterns, fmt, field, skipped):
    if text is None:
      unreadable += 1
      continue
    chars.append(len(text))
    words.append(len(text.split()))
    if sp is not None:
      tokens.append(len(sp.encode(text)))
    h = hashlib.sha1(" ".join(text.split()).encode()).digest()
    dups += h in seen
    seen.add(h)
    if record:
      if isinstance(record.get("url"), str):
        domains[urllib.parse.urlsplit(record["url"]).netloc.lower() or "(no host)"] += 1
      if isinstance(record.get("source"), str):
        sources[record["source"]] += 1
    # Reservoir-free sampling: each document joins the language sample with the same odds.
    if language.available() and (len(chars) <= _LANG_SAMPLE or rng.random() < _LANG_SAMPLE / len(chars)):
      langs[language.detect(text)] += 1
  n = len(chars)
  stats = {
      "documents": n, "unreadable_records": unreadable, "skipped_files": skipped, "characters": int(sum(chars)),
      "words": int(sum(words)), "tokens": int(sum(tokens)) if sp is not None else None,
      "duplicate_rate": dups / n if n else 0.0,
      "chars_percentiles": _percentiles(chars), "words_percentiles": _percentiles(words),
      "tokens_percentiles": _percentiles(tokens) if sp is not None else None,
      "chars_histogram": _histogram(chars),
      "top_domains": domains.most_common(top), "top_sources": sources.most_common(top),
      "languages": dict(langs.most_common()) if langs else None,
  }
  if plot:
    _plot(plot, {"characters": chars, "words": words, **({"tokens": tokens} if sp is not None else {})})
    stats["plot"] = plot
  if json_path:
    with open(json_path, "w") as f:
      json.dump(stats, f, indent=1)
  return stats


def _percentiles(values: list[int]) -> dict:
  if not values:
    return {}
  qs = np.percentile(values, [0, 10, 50, 90, 99, 100])
  return dict(zip(("min", "p10", "p50", "p90", "p99", "max"), (int(q) for q in qs), strict=True))


def _histogram(values: list[int]) -> list[tuple[int, int, int]]:
  """(from, to, documents) over powers-of-two length bins."""
  if not values:
    return []
  edges = [0] + [2 ** k for k in range(int(np.log2(max(1, max(values)))) + 2)]
  counts, _ = np.histogram(values, bins=edges)
  return [(edges[i], edges[i + 1] - 1, int(c)) for i, c in enumerate(counts) if c]


def _plot(path: str, series: dict[str, list[int]]) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.5))
  for ax, (name, values) in zip(np.atleast_1d(axes), series.items(), strict=True):
    top = max(values, default=1)
    ax.hist(values or [0], bins=np.geomspace(1, max(2, top + 1), 40))
    ax.set_xscale("log")
    ax.set_xlabel(f"{name} per document")
    ax.set_ylabel("documents")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def print_stats(s: dict) -> None:
  print(f"documents        {s['documents']:,}" + (f" ({s['unreadable_records']:,} records without the text "
                                                    "field not counted)" if s["unreadable_records"] else ""))
  if s.get("skipped_files"):
    shown = ", ".join(s["skipped_files"][:5]) + (f" and {len(s['skipped_files']) - 5} more" if len(s["skipped_files"]) > 5 else "")
    print(f"skipped files    {len(s['skipped_files'])}: {shown}")
  print(f"characters       {s['characters']:,}")
  print(f"words            {s['words']:,}")
  if s["tokens"] is not None:
    print(f"tokens           {s['tokens']:,}")
  print(f"duplicate rate   {100 * s['duplicate_rate']:.2f}% (exact, whitespace-normalised)")
  for name in ("chars", "words", "tokens"):
    if s.get(f"{name}_percentiles"):
      print(f"{name + ' per doc':<17}" + "  ".join(f"{k} {v:,}" for k, v in s[f"{name}_percentiles"].items()))
  print("length histogram (characters):")
  width = max((c for _, _, c in s["chars_histogram"]), default=1)
  for lo, hi, c in s["chars_histogram"]:
    print(f"  {lo:>9,}-{hi:<9,} {c:>9,} {'#' * max(1, round(40 * c / width))}")
  for title, key in (("top domains", "top_domains"), ("top sources", "top_sources")):
    if s[key]:
      print(f"{title}: " + ", ".join(f"{k} {v:,}" for k, v in s[key]))
  if s["languages"]:
    total = sum(s["languages"].values())
    print("languages (sample): " + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in list(s["languages"].items())[:10]))
  else:
    print("languages: not measured (pip install -e '.[clean]' for py3langid)")
  if s.get("plot"):
    print(f"wrote {s['plot']}")


__all__ = ["corpus_stats", "print_stats"]
