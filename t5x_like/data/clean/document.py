"""Everything that happens to one document, as a pure function of its record and the
options: read (JSON, UTF-8, length) -> normalise -> markup and noise -> PII -> quality
filters -> language; plus what deduplication needs later (content hash, MinHash
signature). Both engines map this over the input, so they cannot disagree about it.

Every character is accounted for: `deltas[stage]` is what a step took away (the whole
remaining text when it removed the document), so input characters = kept characters +
the sum of the deltas (PII masks can make a delta negative: "<PHONE>" may be longer).
"""

from __future__ import annotations

import json
from typing import NamedTuple

from t5x_like.data import json_lines
from t5x_like.data.clean import dedup, language, markup, minhash, normalize, pii, quality
from t5x_like.data.clean.options import CleanOptions

READ_STAGES = ("unreadable", "encoding", "too_long")
EDIT_STAGES = ("normalize", "markup", "pii")
DEDUP_STAGES = ("exact_dup", "near_dup")
STAGES = READ_STAGES + EDIT_STAGES + quality.FILTERS + ("language",) + DEDUP_STAGES


class Outcome(NamedTuple):
  key: tuple               # (input unit, document) position: the order of the output
  removed_by: str | None   # the stage that removed the document, None if it survives
  input_chars: int
  deltas: dict             # stage -> characters taken away
  line: str | None         # the output JSONL line of a surviving document
  text_hash: bytes | None
  signature: bytes | None  # MinHash signature (uint32 values) when near dedup is on


def _record(raw: bytes | str, fmt: str, field: str, bad_utf8: str) -> tuple[dict | None, str | None, str | None]:
  """(record, text, why not): the JSONL object (None for text input) and its text."""
  text = normalize.decode(raw, bad_utf8)
  if text is None:
    return None, None, "encoding"
  if fmt != "jsonl":
    return None, text, None
  try:
    record = json_lines.loads(text)
  except json_lines.NotText:  # counted with the undecodable lines
    return None, None, "encoding"
  except ValueError:
    return None, None, "unreadable"
  if not isinstance(record, dict) or not isinstance(record.get(field), str):
    return None, None, "unreadable"
  return record, record[field], None


def clean_document(key: tuple, raw: bytes | str, fmt: str, o: CleanOptions) -> Outcome:
  record, text, why = _record(raw, fmt, o.field, o.bad_utf8)
  if why is not None:
    chars = len(raw) if isinstance(raw, str) else len(raw.decode("utf-8", "replace"))
    return Outcome(key, why, chars, {why: chars}, None, None, None)
  chars = len(text)
  deltas: dict[str, int] = {}

  def removed(stage: str) -> Outcome:
    deltas[stage] = deltas.get(stage, 0) + len(text)
    return Outcome(key, stage, chars, deltas, None, None, None)

  if o.max_doc_chars and chars > o.max_doc_chars:
    return removed("too_long")
  for stage, on, edit in (
      ("normalize", o.normalize, normalize.normalize),
      ("markup", o.html or o.urls or o.emails or o.symbol_runs, lambda t: _markup(t, o)),
      ("pii", o.pii, pii.mask_pii)):
    if not on:
      continue
    before = len(text)
    text = edit(text)
    if o.normalize and stage != "normalize":
      text = normalize.normalize(text)  # what removing markup leaves: blank runs, spaces
    if before != len(text):
      deltas[stage] = before - len(text)
    if not text.strip():
      return removed(stage)
  failed = quality.failed_filter(text, o)
  if failed:
    return removed(failed)
  if o.languages and language.detect(text) not in o.languages:
    return removed("language")
  if record is None:
    record = {o.field: text}
  else:
    record = dict(record)
    record[o.field] = text
  line = json.dumps(record, ensure_ascii=False)
  text_hash = dedup.content_hash(text) if o.exact_dedup else None
  sig = minhash.signature(text, o.shingle, o.num_perm, o.seed).tobytes() if o.near_dedup else None
  return Outcome(key, None, chars, deltas, line, text_hash, sig)


def _markup(text: str, o: CleanOptions) -> str:
  if o.html:
    text = markup.html_to_text(text)
  # With PII masking on, addresses are masked by that step rather than removed here.
  return markup.strip_noise(text, urls=o.urls, emails=o.emails and not o.pii, symbol_runs=o.symbol_runs)


def counts(outcome: Outcome, removed_by: str | None = None) -> list[tuple[str, int]]:
  """The (counter, amount) pairs one document adds to the report; `removed_by` is the
  dedup stage that removed a document that `clean_document` kept."""
  stage = removed_by or outcome.removed_by
  pairs = [("input_docs", 1), ("input_chars", outcome.input_chars)]
  kept_chars = outcome.input_chars - sum(outcome.deltas.values())
  for name, value in outcome.deltas.items():
    pairs.append((f"chars:{name}", value))
  if stage is None:
    pairs += [("kept_docs", 1), ("kept_chars", kept_chars)]
  else:
    pairs.append((f"docs:{stage}", 1))
    if removed_by:
      pairs.append((f"chars:{stage}", kept_chars))
  return pairs


__all__ = ["DEDUP_STAGES", "STAGES", "Outcome", "clean_document", "counts"]
