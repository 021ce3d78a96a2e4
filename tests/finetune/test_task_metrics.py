"""The fine-tuning metrics against hand-worked examples of their published definitions."""

import numpy as np

from t5x_like.train import task_metrics as M


def test_accuracy_and_macro_f1_by_hand():
  labels = [0, 0, 0, 1, 1, 2]
  preds = [0, 0, 1, 1, 2, 2]
  conf = M.confusion(labels, preds, 3)
  assert conf.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
  assert M.accuracy(conf) == 4 / 6
  # per class F1 = 2TP / (2TP + FP + FN): class 0: 4/5, class 1: 2/4, class 2: 2/3
  assert np.isclose(M.macro_f1(conf), np.mean([4 / 5, 2 / 4, 2 / 3]))


def test_macro_f1_skips_classes_absent_from_labels_and_predictions():
  conf = M.confusion([0, 1, 1], [0, 1, 0], 4)  # classes 2 and 3 never occur
  assert np.isclose(M.macro_f1(conf), np.mean([2 / 3, 2 / 3]))
  assert M.macro_f1(M.confusion([0, 0], [1, 1], 2)) == 0.0  # nothing right


def test_bio_spans_follow_conlleval():
  tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "B-LOC", "I-PER", "O"]
  # I-LOC after O starts a span; B-LOC after I-LOC starts a new one; I-PER after B-LOC too.
  assert M.bio_spans(tags) == {(0, 2, "PER"), (3, 5, "LOC"), (5, 6, "LOC"), (6, 7, "LOC"), (7, 8, "PER")}
  assert M.bio_spans(["O", "O"]) == set()
  assert M.bio_spans(["B-X", "I-X"]) == {(0, 2, "X")}  # a span that runs to the end


def test_span_f1_needs_exact_boundaries_and_type():
  gold = [["B-ERR", "I-ERR", "O", "B-ERR"], ["O", "B-ERR", "I-ERR", "I-ERR"]]
  pred = [["B-ERR", "I-ERR", "O", "O"], ["O", "B-ERR", "I-ERR", "O"]]  # one exact, one too short
  counts = M.span_counts(gold, pred)
  assert counts.tolist() == [1, 2, 3]
  out = M.span_f1(counts)
  assert np.isclose(out["span_precision"], 1 / 2) and np.isclose(out["span_recall"], 1 / 3)
  assert np.isclose(out["span_f1"], 2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
  assert M.span_f1(np.zeros(3))["span_f1"] == 0.0


def test_exact_match_normalises_whitespace_only():
  assert M.exact_matches(["19", " 2  3", "7"], ["19", "2 3", "-7"]) == 2
