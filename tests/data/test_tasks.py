"""Labelled examples -> rows (data/tasks.py) with the session's real SentencePiece model."""

import json

import numpy as np
import pytest
import tensorflow as tf

from t5x_like import config as C
from t5x_like import features as F
from t5x_like.data import tasks
from t5x_like.errors import DataError


def _write(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


def _cfg(objective, seq_len=32, **task):
  cfg = C.Config()
  cfg.data.source, cfg.data.objective, cfg.data.seq_len = "jsonl", objective, seq_len
  for k, v in task.items():
    setattr(cfg.data.task, k, v)
  return cfg.data


def _rows(tmp_path, tok, objective, rows, num_labels=0, **kw):
  cfg = _cfg(objective, **kw)
  return tasks.task_rows(cfg, _write(tmp_path / "d.jsonl", rows), tok, num_labels, "data.train_files")


def test_classification_rows_hold_the_pair_types_and_label(tmp_path, tok):
  out = _rows(tmp_path, tok, "classification", [{"text": "3 + 4 =", "text_pair": "7", "label": "correct"},
                                                {"text": "the red fox", "label": 0}],
              num_labels=2, labels=["wrong", "correct"])
  a, b, eos = tok.encode("3 + 4 ="), tok.encode("7"), tok.eos_id
  want = a + [eos] + b + [eos]
  assert out[F.ENCODER_INPUT_TOKENS][0, :len(want)].tolist() == want
  assert not out[F.ENCODER_INPUT_TOKENS][0, len(want):].any()
  assert out[F.ENCODER_TOKEN_TYPE_IDS][0, :len(want)].tolist() == [0] * (len(a) + 1) + [1] * (len(b) + 1)
  assert out[F.ENCODER_SEGMENT_IDS][0].sum() == len(want)
  assert out[F.ENCODER_CLASS_LABELS][:, 0].tolist() == [1, 0]
  assert not out[F.ENCODER_LOSS_WEIGHTS].any()  # no MLM loss in classification rows


def test_a_long_pair_loses_tokens_from_its_longer_side(tmp_path, tok):
  long_a, short_b = " ".join(["the red fox sees a big dog"] * 6), "3 + 4 = 7"
  out = _rows(tmp_path, tok, "classification", [{"text": long_a, "text_pair": short_b, "label": 1},
                                                {"text": long_a, "text_pair": long_a, "label": 1}],
              num_labels=2, seq_len=24)
  full_a, full_b = tok.encode(long_a), tok.encode(short_b)
  assert len(full_b) < 11 < len(full_a)
  for row, b_whole in zip(out[F.ENCODER_INPUT_TOKENS].tolist(), (True, False), strict=True):
    first = row.index(tok.eos_id)
    a, b = row[:first], row[first + 1:-1]
    assert row[-1] == tok.eos_id and len(a) + len(b) == 22  # every slot used
    assert a == full_a[:len(a)] and b == (full_b if b_whole else full_a)[:len(b)]  # both cut at the end
    if b_whole:
      assert b == full_b  # the shorter side keeps all of its tokens
    else:
      assert len(a) == len(b) == 11  # two long sides end up even


def test_tagging_scores_the_first_piece_of_each_word(tmp_path, tok):
  words = ["17", "+", "2", "=", "20", ".", "count"]
  tags = ["B-ERR", "I-ERR", "I-ERR", "I-ERR", "I-ERR", "O", "O"]
  out = _rows(tmp_path, tok, "tagging", [{"tokens": words, "tags": tags}], num_labels=3,
              labels=["O", "B-ERR", "I-ERR"])
  pieces = [tok.encode(w) for w in words]
  flat = [p for ps in pieces for p in ps]
  assert out[F.ENCODER_INPUT_TOKENS][0, :len(flat) + 1].tolist() == flat + [tok.eos_id]
  w = out[F.ENCODER_LOSS_WEIGHTS][0]
  firsts = np.cumsum([0] + [len(p) for p in pieces[:-1]])
  assert np.flatnonzero(w).tolist() == firsts.tolist()
  assert out[F.ENCODER_TARGET_TOKENS][0, firsts].tolist() == [1, 2, 2, 2, 2, 0, 0]


def test_completion_scores_only_the_completion_and_eos(tmp_path, tok):
  out = _rows(tmp_path, tok, "completion", [{"prompt": "compute : 3 + 4", "completion": "7"}])
  p, c = tok.encode("compute : 3 + 4"), tok.encode("7") + [tok.eos_id]
  n = len(p) + len(c)
  assert out[F.DECODER_TARGET_TOKENS][0, :n].tolist() == p + c
  assert out[F.DECODER_INPUT_TOKENS][0, :n].tolist() == [0] + (p + c)[:-1]
  assert out[F.DECODER_LOSS_WEIGHTS][0].tolist() == [0.0] * len(p) + [1.0] * len(c) + [0.0] * (32 - n)


def test_seq2seq_and_pairs_rows(tmp_path, tok):
  out = _rows(tmp_path, tok, "seq2seq", [{"input": "compute : 3 + 4", "target": "7"}], targets_len=6)
  assert out[F.DECODER_TARGET_TOKENS].shape == (1, 6) and out[F.ENCODER_INPUT_TOKENS].shape == (1, 32)
  t = tok.encode("7") + [tok.eos_id]
  assert out[F.DECODER_TARGET_TOKENS][0, :len(t)].tolist() == t
  assert out[F.DECODER_INPUT_TOKENS][0, :len(t)].tolist() == [0] + t[:-1]
  out = _rows(tmp_path, tok, "pairs", [{"text": "the red fox", "text_pair": "a dog"}])
  a, b = tok.encode("the red fox") + [tok.eos_id], tok.encode("a dog") + [tok.eos_id]
  assert out[F.ENCODER_SEGMENT_IDS][0, :len(a) + len(b)].tolist() == [1] * len(a) + [2] * len(b)
  assert out[F.ENCODER_POSITIONS][0, :len(a) + len(b)].tolist() == list(range(len(a))) + list(range(len(b)))


def test_seq2seq_reads_t5_sentinels_by_name(tmp_path, tok, spm_path):
  cfg = _cfg("seq2seq", targets_len=8)
  cfg.tokenizer.extra_ids = 3
  files = _write(tmp_path / "d.jsonl", [{"input": "count : 4 <extra_id_0> 6 .", "target": "<extra_id_0> 5 <extra_id_1>"}])
  batch = next(tasks.make_task_dataset(cfg, files=files, tokenizer_path=spm_path, batch_size=1, num_labels=0,
                                       shuffle=False, repeat=False).as_numpy_iterator())
  s0, s1, eos = tok.vocab_size + 2, tok.vocab_size + 1, tok.eos_id  # sentinel N: vocab + extra_ids - 1 - N
  want_in = tok.encode("count : 4") + [s0] + tok.encode("6 .") + [eos]
  want_out = [s0] + tok.encode("5") + [s1, eos]
  assert batch[F.ENCODER_INPUT_TOKENS][0, :len(want_in) + 1].tolist() == want_in + [0]
  assert batch[F.DECODER_TARGET_TOKENS][0, :len(want_out) + 1].tolist() == want_out + [0]
  bad = _write(tmp_path / "bad.jsonl", [{"input": "a <extra_id_3> b", "target": "c"}])
  with pytest.raises(DataError, match=r"bad\.jsonl:1: <extra_id_3> .* has 3 sentinels"):
    tasks.make_task_dataset(cfg, files=bad, tokenizer_path=spm_path, batch_size=1, num_labels=0)


@pytest.mark.parametrize("row, needle", [
    ({"text": "a", "label": "maybe"}, "'maybe' is not one of ['no', 'yes']"),
    ({"text": 3, "label": "no"}, 'field "text" (data.task.text_field) must be a str'),
    ({"label": "no"}, 'field "text" (data.task.text_field) must be a str, got nothing'),
    ({"text": "a"}, 'field "label" is missing (it must be one of [\'no\', \'yes\']); fix the line, or name the '
                    'field with data.task.label_field'),
])
def test_bad_examples_name_the_line_and_the_fix(tmp_path, tok, row, needle):
  with pytest.raises(DataError, match=r"d\.jsonl:2: ") as e:
    _rows(tmp_path, tok, "classification", [{"text": "ok", "label": "no"}, row], num_labels=2, labels=["no", "yes"])
  assert needle in str(e.value)


def test_words_and_tags_must_pair_up(tmp_path, tok):
  with pytest.raises(DataError, match="2 words .* but 1 tags"):
    _rows(tmp_path, tok, "tagging", [{"tokens": ["a", "b"], "tags": ["O"]}], num_labels=1, labels=["O"])


def test_training_epochs_are_permutations_and_resume_exactly(tmp_path, spm_path):
  rows = [{"text": f"{i} + 1 =", "label": i % 2} for i in range(24)]
  cfg = _cfg("classification")
  path = _write(tmp_path / "t.jsonl", rows)

  def dataset():
    return tasks.make_task_dataset(cfg, files=path, tokenizer_path=spm_path, batch_size=4, num_labels=2, seed=3)

  it = iter(dataset())
  ids = [next(it)[F.ENCODER_INPUT_TOKENS].numpy() for _ in range(12)]  # two epochs of 6 batches
  keys = [tuple(r) for b in ids for r in b]
  assert len(set(keys[:24])) == 24 and set(keys[:24]) == set(keys[24:])  # each example once per epoch
  assert keys[:24] != keys[24:]  # in another order
  it = iter(dataset())
  for _ in range(5):
    next(it)
  ckpt = tf.train.Checkpoint(iterator=it)
  saved = ckpt.write(str(tmp_path / "it"))
  want = [next(it)[F.ENCODER_INPUT_TOKENS].numpy() for _ in range(3)]
  it2 = iter(dataset())
  tf.train.Checkpoint(iterator=it2).read(saved).assert_consumed()
  got = [next(it2)[F.ENCODER_INPUT_TOKENS].numpy() for _ in range(3)]
  for a, b in zip(want, got, strict=True):
    np.testing.assert_array_equal(a, b)


def test_eval_reads_each_example_once_and_pads(tmp_path, spm_path):
  path = _write(tmp_path / "e.jsonl", [{"text": f"{i} + 1 =", "label": 0} for i in range(10)])
  ds = tasks.make_task_dataset(_cfg("classification"), files=path, tokenizer_path=spm_path, batch_size=4,
                               num_labels=2, shuffle=False, repeat=False)
  batches = list(ds.as_numpy_iterator())
  assert len(batches) == 3
  assert [int((b[F.ENCODER_SEGMENT_IDS][:, 0] > 0).sum()) for b in batches] == [4, 4, 2]
