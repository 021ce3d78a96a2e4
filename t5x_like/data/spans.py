"""T5 span-corruption lengths, in plain Python: config validation and the objective share them."""

from __future__ import annotations


def span_lengths(raw_len: int, noise_density: float, mean_span: float) -> tuple[int, int]:
  """(inputs, targets) lengths of a corrupted example of `raw_len` tokens, EOS included:
  the non-noise tokens plus one sentinel per span, and the noise tokens plus one sentinel
  per span. Uses the same rounding as the in-graph noise mask."""
  noise = noise_tokens(raw_len, noise_density)
  spans = max(round(noise / mean_span), 1)
  return raw_len - noise + spans + 1, noise + spans + 1


def noise_tokens(raw_len: int, noise_density: float) -> int:
  return min(max(round(raw_len * noise_density), 1), raw_len - 1)


def span_raw_len(data_cfg) -> int:
  """The longest raw example whose corrupted inputs fit in `seq_len` (T5's choice)."""
  s = data_cfg.span_corruption
  n = 2
  while span_lengths(n + 1, s.noise_density, s.mean_span_length)[0] <= data_cfg.seq_len:
    n += 1
  return n


def span_targets_len(data_cfg) -> int:
  """Decoder row length: `span_corruption.targets_len`, or derived from seq_len like T5."""
  s = data_cfg.span_corruption
  if s.targets_len:
    return s.targets_len
  return span_lengths(span_raw_len(data_cfg), s.noise_density, s.mean_span_length)[1]


def max_spans(data_cfg) -> int:
  """The most noise spans one example can have, i.e. the sentinels it needs."""
  s = data_cfg.span_corruption
  raw_len = span_raw_len(data_cfg)
  targets_len = span_lengths(raw_len, s.noise_density, s.mean_span_length)[1]
  return targets_len - 1 - noise_tokens(raw_len, s.noise_density)
