"""What `t5x-like data clean` does, one field per knob: every step can be switched off and
every threshold set from the command line (`--set min_words=20` flags set
onto these names; see cli_args.py)."""

from __future__ import annotations

import dataclasses
import math

from t5x_like.errors import ConfigError

# Gopher's stop words (Rae et al. 2021): English prose has at least two of them.
GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


@dataclasses.dataclass(frozen=True)
class CleanOptions:
  # Reading.
  fmt: str = "auto"                 # auto | text | jsonl | tfds
  field: str = "text"               # JSONL field / TFDS feature holding the text
  text_docs: str = "line"           # text files: one document per `line`, per `paragraph` or per `file`
  bad_utf8: str = "drop"            # drop: the document goes (counted); replace: U+FFFD, then cleaned
  max_doc_chars: int = 1_000_000    # longer documents go before any work (a 50 MB line is no document)
  # Normalisation.
  normalize: bool = True            # NFKC, control characters, whitespace, U+FFFD
  # Markup and noise.
  html: bool = True                 # HTML tags and entities -> text (stdlib html.parser)
  urls: bool = True                 # remove URLs
  emails: bool = True               # remove e-mail addresses (masked instead with pii)
  symbol_runs: bool = True          # remove runs of 4+ symbols ("=====", "★★★★")
  # PII.
  pii: bool = False                 # mask e-mails as <EMAIL>, IPv4 addresses as <IP>, phone numbers as <PHONE>
  # Quality (C4 / Gopher style); a filter is off when its threshold is None.
  min_words: int | None = 50
  max_words: int | None = 100_000
  min_mean_word_len: float | None = 3.0
  max_mean_word_len: float | None = 10.0
  max_symbol_ratio: float | None = 0.1      # ("#" + "..." + "…") per word
  min_alpha_words: float | None = 0.8       # fraction of words with a letter
  min_line_punct: float | None = 0.0        # fraction of lines ending in . ! ? " ' (C4); 0 = off
  max_dup_lines: float | None = 0.3         # fraction of lines that repeat an earlier line
  max_dup_line_chars: float | None = 0.2    # fraction of characters in those lines
  max_top_ngram: tuple = ((2, 0.20), (3, 0.18), (4, 0.16))  # chars in the most frequent n-gram
  max_dup_ngram: tuple = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
  stop_words: tuple = GOPHER_STOP_WORDS
  min_stop_words: int | None = 2
  languages: tuple = ()             # keep only these ISO codes (needs py3langid); () = no lang filter
  # Deduplication.
  exact_dedup: bool = True
  near_dedup: bool = True
  jaccard: float = 0.7              # near-duplicate threshold on word-shingle Jaccard (docs/data.md: why 0.7)
  shingle: int = 5                  # words per shingle
  num_perm: int = 128               # MinHash permutations
  seed: int = 1                     # MinHash permutation seed (fixed: same input, same output)
  # Output.
  shard_docs: int = 100_000         # documents per output shard at most
  tfrecord: bool = False            # also write tf.train.Example shards (feature `field`)

  def check(self) -> CleanOptions:
    if self.fmt not in ("auto", "text", "jsonl", "tfds"):
      raise ConfigError(f"--format must be auto, text, jsonl or tfds, got {self.fmt!r}")
    if self.text_docs not in ("line", "paragraph", "file"):
      raise ConfigError(f"--text-docs must be line, paragraph or file, got {self.text_docs!r}")
    if self.bad_utf8 not in ("drop", "replace"):
      raise ConfigError(f"--bad-utf8 must be drop or replace, got {self.bad_utf8!r}")
    if not 0 < self.jaccard <= 1:
      raise ConfigError(f"--jaccard must be in (0, 1], got {self.jaccard}")
    if self.shingle < 1 or self.num_perm < 8 or self.shard_docs < 1:
      raise ConfigError("--shingle >= 1, --num-perm >= 8 and --shard-docs >= 1 are required")
    if self.languages:
      from t5x_like.data.clean import language
      language.require()
    return self


def field_names() -> list[str]:
  return [f.name for f in dataclasses.fields(CleanOptions)]


def with_settings(opts: CleanOptions, settings: list[str]) -> CleanOptions:
  """Applies `--set NAME=VALUE` pairs: numbers, true/false, none (a filter off), or
  comma-separated lists (`languages=en,de`; `max_top_ngram=2:0.2,3:0.18`)."""
  fields = {f.name: f for f in dataclasses.fields(CleanOptions)}
  changes = {}
  for item in settings:
    name, eq, text = item.partition("=")
    name = name.strip().replace("-", "_")
    if not eq or name not in fields:
      import difflib
      near = difflib.get_close_matches(name, fields, n=1)
      hint = f" (did you mean {near[0]}?)" if near else ""
      raise ConfigError(f"--set {item!r}: expected NAME=VALUE with NAME a clean option{hint}; "
                        f"options: {', '.join(fields)}")
    changes[name] = _parse(name, text.strip(), getattr(opts, name), "None" in str(fields[name].type))
  return dataclasses.replace(opts, **changes).check()


def _parse(name: str, text: str, current, optional: bool):
  """`optional`: the field may be None (a quality filter that can be turned off)."""
  low = text.lower()
  if low in ("none", "off") and isinstance(current, tuple):
    return ()  # an empty list: the filter (languages, n-gram limits) off
  if low in ("none", "off") and not isinstance(current, bool):
    if not optional:
      raise ConfigError(f"--set {name}={text}: {name} cannot be turned off (now {current!r}); "
                        "turn off its stage instead (near_dedup=false, exact_dedup=false, pii=false, ...)")
    return None
  try:
    if isinstance(current, bool):
      if low not in ("true", "false", "1", "0", "on", "off"):
        raise ValueError
      return low in ("true", "1", "on")
    if isinstance(current, tuple):
      items = [s.strip() for s in text.split(",") if s.strip()]
      if current and isinstance(current[0], tuple):
        return tuple((int(n), float(v)) for n, v in (s.split(":") for s in items))
      return tuple(items)
    if isinstance(current, int) and not isinstance(current, bool):
      return int(text)
    if isinstance(current, float) or current is None:
      value = float(text)
      if not math.isfinite(value):
        raise ValueError
      return value
    return text
  except ValueError:
    raise ConfigError(f"--set {name}={text!r}: not a valid value (now {current!r})") from None


def without_quality(opts: CleanOptions) -> CleanOptions:
  """Every quality filter off (`--no-quality`)."""
  off = {f.name: None for f in dataclasses.fields(CleanOptions)
         if f.name.startswith(("min_", "max_")) and f.name not in ("max_doc_chars",)}
  off.update(max_top_ngram=(), max_dup_ngram=(), min_line_punct=None)
  return dataclasses.replace(opts, **off)
