"""Skill scores at the end of a run on the built-in corpus, one scorer per family: held-out
arithmetic problems ("17 + 25 =") answered by the trained model, and for the
encoder-decoder, counting runs with a number hidden in a noise span.

- decoder: greedy continuation of the prompt; the first word must be the answer.
- encoder: each token of the answer is masked on its own and must be predicted (chance is
  about 1 in 10 for a digit).
- encoder_decoder: one number of a counting run ("count : 5 6 <extra_id_0> 8 .") is a
  noise span (sentinel 0) of the input; the greedy decoder output between sentinel 0 and
  the next sentinel must be that number. The same with the arithmetic answer as the span is
  reported beside it (`arithmetic_fill_accuracy`): it stays rare for a tiny T5 at a CPU
  budget, as span corruption rarely hides exactly an answer.

The items come from their own random streams (`synthetic.skill_examples`,
`synthetic.counting_fill_examples`), not the eval files. Each scorer gets the model as
`predict(batch, **kwargs) -> numpy array` (its jitted `predict`), so a test can put an
oracle in its place. Each family class binds its scorer as `skill`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from t5x_like import features as F
from t5x_like.config import Config

Predict = Callable[..., np.ndarray]


def _pad_rows(rows: list[list[int]], min_width: int = 8) -> tuple[np.ndarray, np.ndarray]:
  """Left-aligned rows padded with 0 to a power-of-two width (few distinct compiles)."""
  width = int(2 ** math.ceil(math.log2(max(max(len(r) for r in rows), min_width))))
  out = np.zeros((len(rows), width), np.int32)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r
  return out, np.array([len(r) for r in rows], np.int32)


def decoder_skill(cfg: Config, predict: Predict, tok, examples) -> dict:
  from t5x_like.data import synthetic
  tokens, lengths = _pad_rows([tok.encode(p) for p, _ in examples])
  out = predict({F.PROMPT_TOKENS: tokens, F.PROMPT_LENGTHS: lengths}, max_new_tokens=6, eos_id=tok.eos_id)
  correct = [synthetic.score_answer(tok.decode(out[i].tolist()), ans)
             for i, (_, ans) in enumerate(examples)]
  return {"skill_accuracy": float(np.mean(correct)), "skill_examples": float(len(examples)),
          "skill_name": "arithmetic answer accuracy (held-out, greedy continuation)"}


def _answer_tokens(tok, prompt: str, answer: str) -> tuple[list[int], int, int] | None:
  """Ids of "PROMPT ANSWER ." and the [start, end) of the answer's ids in them, or None
  when the tokenizer merges the answer with its neighbours (then no clean mask exists)."""
  full, head, tail = tok.encode(f"{prompt} {answer} ."), tok.encode(prompt), tok.encode(".")
  if full[:len(head)] != head or full[len(full) - len(tail):] != tail:
    return None
  return full, len(head), len(full) - len(tail)


def encoder_skill(cfg: Config, predict: Predict, tok, examples) -> dict:
  """Masked answer-token accuracy: each token of the answer is masked on its own (the
  rest of "PROMPT ANSWER ." visible) and must be predicted exactly."""
  from t5x_like.data import objectives
  mask = objectives.mask_id(tok, cfg.data)
  rows, wanted, total = [], [], 0
  for prompt, answer in examples:
    found = _answer_tokens(tok, prompt, answer)
    if found is None:  # no clean mask: its answer tokens count as wrong
      total += max(len(tok.encode(answer)), 1)
      continue
    full, lo, hi = found
    total += hi - lo
    for j in range(lo, hi):
      rows.append(full[:j] + [mask] + full[j + 1:] + [tok.eos_id])
      wanted.append((j, full[j]))
  tokens, _ = _pad_rows(rows)
  out = predict({F.ENCODER_INPUT_TOKENS: tokens})
  correct = sum(int(out[i, j] == t) for i, (j, t) in enumerate(wanted))
  return {"skill_accuracy": correct / max(total, 1), "skill_examples": float(len(examples)),
          "skill_name": "masked answer-token accuracy (held-out arithmetic, one token masked at a time)"}


def _fill_spans(predict: Predict, tok, sentinel0: int, rows: list[list[int]]) -> list[list[int]]:
  """The greedy span after sentinel 0 for each input row (empty when the output does not
  start with sentinel 0); a span ends at the next sentinel, EOS or padding."""
  tokens, _ = _pad_rows(rows)
  out = predict({F.ENCODER_INPUT_TOKENS: tokens}, max_new_tokens=8, eos_id=tok.eos_id)
  spans = []
  for ids in out.tolist():
    span = []
    if ids and ids[0] == sentinel0:
      for t in ids[1:]:
        if t >= tok.vocab_size or t in (tok.eos_id, 0):
          break
        span.append(t)
    spans.append(span)
  return spans


def encoder_decoder_skill(cfg: Config, predict: Predict, tok, examples) -> dict:
  """Greedy span filling. The score is on counting runs ("count : 5 6 <extra_id_0> 8 .",
  the span must be "7"); the same for arithmetic answers ("17 + 25 = <extra_id_0> .") is
  reported as `arithmetic_fill_accuracy`. Each input ends with a second sentinel, as
  pretraining inputs end with a noise span."""
  from t5x_like.data import objectives, synthetic
  sentinel0 = objectives.sentinel_base(tok, cfg.data) - 1
  counting = synthetic.counting_fill_examples(len(examples), seed=cfg.data.seed + 1)
  items = counting + [(prompt, answer, ".") for prompt, answer in examples]
  rows = [tok.encode(before) + [sentinel0] + tok.encode(after) + [sentinel0 - 1, tok.eos_id]
          for before, _, after in items]
  correct = [bool(span) and synthetic.score_answer(tok.decode(span), answer)
             for span, (_, answer, _) in zip(_fill_spans(predict, tok, sentinel0, rows),
                                             items, strict=True)]
  return {"skill_accuracy": float(np.mean(correct[:len(counting)])),
          "skill_examples": float(len(counting)),
          "skill_name": "span-filling accuracy (held-out counting runs, greedy)",
          "arithmetic_fill_accuracy": float(np.mean(correct[len(counting):]))}
