"""JSONL records in and out of `t5x-like infer` and `t5x-like score`, and the rows of ids
they become.

A record names its sequence by text (tokenized with the SentencePiece model) or by ids
(for models without one here, such as imports from Hugging Face). Which fields a record
needs depends on whether the family reads an input beside its targets (an encoder):

  infer, any family:            "text" | "ids"       the prompt (or encoder input)
  score, decoder-only:          "text" | "ids"       the sequence
  score, encoder-decoder:       "inputs" | "input_ids", and "targets" | "target_ids"

Text becomes ids without EOS where the model continues it (a decoder-only prompt) and
with EOS where it is a whole sequence (an encoder input, a scored sequence), as the
training data ends every document with EOS. Ids are used as given. T5's sentinels
(`<extra_id_N>`, ids past the tokenizer's pieces) may be written in text either way.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from t5x_like import features as F
from t5x_like.data import json_lines
from t5x_like.errors import DataError

TEXT, IDS = "text", "ids"
INPUTS, INPUT_IDS = "inputs", "input_ids"
TARGETS, TARGET_IDS = "targets", "target_ids"


@dataclasses.dataclass(frozen=True)
class Record:
  where: str  # "FILE:LINE" for messages
  fields: dict


def read_jsonl(path: str) -> list[Record]:
  """Every non-blank line of `path` as a JSON object, or a DataError naming the line."""
  out = []
  try:
    with open(path, encoding="utf-8") as f:
      for n, line in enumerate(f, start=1):
        if not line.strip():
          continue
        try:
          fields = json_lines.loads(line)
        except ValueError as e:
          raise DataError(f"{path}:{n}: not valid JSON ({e.msg}); each line must be one JSON object") from None
        if not isinstance(fields, dict):
          raise DataError(f"{path}:{n}: a JSON {type(fields).__name__}, not an object such as "
                          '{"text": "..."} or {"ids": [1, 2]}')
        out.append(Record(f"{path}:{n}", fields))
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
  if not out:
    raise DataError(f"{path} holds no records")
  return out


def has_encoder(contract: F.Contract) -> bool:
  """Whether the family reads an input beside the sequence it scores (encoder-decoder)."""
  return contract.first_side is not contract.target_side


class Tokens:
  """Record fields <-> ids, checked against the vocabulary; `tokenizer` may be None. Its
  sentinels (`Tokenizer.extra_ids`) are read and written as "<extra_id_N>"."""

  def __init__(self, tokenizer, vocab_size: int):
    self.tokenizer, self.vocab_size = tokenizer, vocab_size

  def ids(self, record: Record, text_key: str, ids_key: str, *, eos: bool) -> list[int]:
    f = record.fields
    if ids_key in f:
      ids = f[ids_key]
      if not (isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
        raise DataError(f'{record.where}: "{ids_key}" must be a list of integer token ids')
    elif text_key in f:
      if not isinstance(f[text_key], str):
        raise DataError(f'{record.where}: "{text_key}" must be a string')
      if self.tokenizer is None:
        raise DataError(f'{record.where}: "{text_key}" needs a SentencePiece model to tokenize it; '
                        f'pass --tokenizer PATH, or give token ids as "{ids_key}"')
      ids = self.tokenizer.encode(f[text_key]) + ([self.tokenizer.eos_id] if eos else [])
    else:
      raise DataError(f'{record.where}: the record has neither "{text_key}" nor "{ids_key}"')
    bad = [i for i in ids if not 0 <= i < self.vocab_size]
    if bad:
      raise DataError(f"{record.where}: token id {bad[0]} is outside the model's vocabulary of "
                      f"{self.vocab_size}")
    return list(ids)

  def text(self, ids: list[int]) -> str | None:
    """The text of `ids` (None without a tokenizer); sentinels are written back by name."""
    return None if self.tokenizer is None else self.tokenizer.decode(ids)


def bucket(n: int, minimum: int = 8) -> int:
  """The power of two >= n (at least `minimum`): few distinct widths, few compiles."""
  return int(2 ** math.ceil(math.log2(max(n, minimum))))


def width_for(rows: list[list[int]], records: list[Record], cfg) -> int:
  """One buffer width for all `rows`: the next power of two, except with learned
  positions, whose table padding must not overrun: there the longest row exactly."""
  longest = max(range(len(rows)), key=lambda i: len(rows[i]))
  n = len(rows[longest])
  if cfg.position != "learned":
    return bucket(n)
  if n > cfg.max_len:
    raise DataError(f"{records[longest].where}: {n} tokens, more than the model's {cfg.max_len} "
                    "learned positions")
  return n


def pad_rows(rows: list[list[int]], width: int, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
  """`[num_rows, width]` left-aligned ids padded with 0, and their lengths. Rows past
  the given ones repeat the last (a full batch keeps one compiled shape; they are dropped)."""
  rows = rows + [rows[-1]] * (num_rows - len(rows))
  out = np.zeros((num_rows, width), np.int32)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r
  return out, np.array([len(r) for r in rows], np.int32)


def segments(lengths_b: np.ndarray, width: int) -> np.ndarray:
  """Segment ids of left-aligned rows: 1 on each row's ids, 0 on its padding."""
  return (np.arange(width)[None, :] < lengths_b[:, None]).astype(np.int32)


def prompt_batch(contract: F.Contract, tokens_bp: np.ndarray, lengths_b: np.ndarray) -> dict:
  """The features `prefill` reads: the encoder input of a family with an encoder, else the
  prompts `predict` documents (`features.PROMPT_TOKENS`, `PROMPT_LENGTHS`)."""
  if has_encoder(contract):
    side = contract.first_side
    return {side.input_tokens: tokens_bp, side.segment_ids: segments(lengths_b, tokens_bp.shape[1])}
  return {F.PROMPT_TOKENS: tokens_bp, F.PROMPT_LENGTHS: lengths_b}


def json_line(record: dict) -> str:
  """One output record as strict JSON: a score that is not finite (a diverged model's NaN,
  which json.dumps would write as the non-JSON `NaN`) is null."""
  return json.dumps({k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()},
                    ensure_ascii=False)


def write_jsonl(path: str, records: list[dict]) -> None:
  with open(path, "w", encoding="utf-8") as f:
    for r in records:
      f.write(json_line(r) + "\n")
