"""The encoder-decoder skill scorer: item layout and span parsing, checked with oracle
decoders (the model's `predict` replaced by functions that read the input ids) instead of a
trained model, so a wrong layout or parse shows as a wrong score. `tok` is the session's
tokenizer (tests/conftest.py)."""

import re
from types import SimpleNamespace

import numpy as np

from t5x_like.config import Config, replace
from t5x_like.data import objectives, synthetic
from t5x_like.models import skill


def _cfg():
  data = replace(Config(), data=dict(source="synthetic", objective="span_corruption", extra_ids=16, seed=0)).data
  return SimpleNamespace(data=data)


def _true_answer(text_before: str) -> str:
  """The hidden number, worked out from the text before the sentinel alone."""
  if text_before.startswith("count :"):
    return str(int(text_before.split()[-1]) + 1)
  a, op, b = re.fullmatch(r"\s*(\d+) ([+-]) (\d+) =\s*", text_before).groups()
  return str(int(a) + int(b) if op == "+" else int(a) - int(b))


def _oracle(tok, sentinel0, answer_of, *, lead=True):
  """Stands in for the model's jitted predict(batch, **kwargs)."""
  def run(batch, **kwargs):
    out = np.zeros((len(batch["encoder_input_tokens"]), kwargs["max_new_tokens"]), np.int32)
    for i, row in enumerate(batch["encoder_input_tokens"].tolist()):
      assert row.count(sentinel0) == 1 and row.count(sentinel0 - 1) == 1, row
      before = tok.decode(row[:row.index(sentinel0)])
      ids = ([sentinel0] if lead else []) + tok.encode(answer_of(before)) + [sentinel0 - 1, tok.eos_id]
      out[i, :len(ids)] = ids[:out.shape[1]]
    return out
  return run


def test_oracle_that_fills_each_span_scores_full_marks(tok):
  cfg = _cfg()
  s0 = objectives.sentinel_base(tok, cfg.data) - 1
  items = synthetic.skill_examples(40, seed=1)
  got = skill.encoder_decoder_skill(cfg, _oracle(tok, s0, _true_answer), tok, items)
  assert got["skill_accuracy"] == 1.0 and got["arithmetic_fill_accuracy"] == 1.0, got
  assert got["skill_examples"] == 40 and "counting" in got["skill_name"]


def test_constant_or_unmarked_spans_score_what_they_match(tok):
  cfg = _cfg()
  s0 = objectives.sentinel_base(tok, cfg.data) - 1
  got = skill.encoder_decoder_skill(cfg, _oracle(tok, s0, lambda before: "7"), tok,
                                    synthetic.skill_examples(200, seed=1))
  counting = synthetic.counting_fill_examples(200, seed=1)
  arithmetic = synthetic.skill_examples(200, seed=1)
  assert got["skill_accuracy"] == np.mean([a == "7" for _, a, _ in counting]) > 0
  assert got["arithmetic_fill_accuracy"] == np.mean([a == "7" for _, a in arithmetic]) > 0
  # Without sentinel 0 in front, the output is not a filled span at all.
  got = skill.encoder_decoder_skill(cfg, _oracle(tok, s0, _true_answer, lead=False), tok, arithmetic)
  assert got["skill_accuracy"] == 0 and got["arithmetic_fill_accuracy"] == 0


def test_counting_fill_items_follow_the_documents():
  items = synthetic.counting_fill_examples(300, seed=1)
  assert items == synthetic.counting_fill_examples(300, seed=1)
  assert items != synthetic.counting_fill_examples(300, seed=2)
  for before, answer, after in items:
    run = [int(w) for w in f"{before[len('count : '):]} {answer} {after[:-1]}".split()]
    assert run == list(range(run[0], run[0] + len(run))) and 3 <= len(run) <= 8
    assert 0 <= run[0] <= synthetic.MAX_OPERAND and before != "count :" and after.endswith(".")
  assert {after for _, _, after in items} > {"."}  # the hidden number is sometimes last, not always
