"""Fine-tuning metrics from their definitions, in numpy: accuracy and macro-F1 from a
confusion matrix, span-level F1 over BIO tags (CoNLL-2000's `conlleval` rules), and exact
match of generated text. Each is computed from counts that add up over batches."""

from __future__ import annotations

import numpy as np


def confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
  """`[true, predicted]` counts."""
  out = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(out, (np.asarray(labels, np.int64), np.asarray(preds, np.int64)), 1)
  return out


def accuracy(conf: np.ndarray) -> float:
  return float(np.trace(conf) / max(conf.sum(), 1))


def macro_f1(conf: np.ndarray) -> float:
  """The mean over classes of F1 = 2 TP / (2 TP + FP + FN), over the classes that occur as
  a label or a prediction (a class absent from both has no F1)."""
  tp = np.diag(conf).astype(np.float64)
  fp, fn = conf.sum(axis=0) - tp, conf.sum(axis=1) - tp
  present = (tp + fp + fn) > 0
  if not present.any():
    return 0.0
  return float(np.mean(2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])))


def bio_spans(tags: list[str]) -> set[tuple[int, int, str]]:
  """Spans `(start, end exclusive, type)` of a BIO tag sequence. As in conlleval, a span
  starts at B-X, or at I-X after anything but a B-X/I-X of the same type, and runs while
  I-X of its type follows."""
  spans, start, kind = set(), None, None
  for i, tag in enumerate([*tags, "O"]):
    prefix, _, t = tag.partition("-")
    continues = prefix == "I" and start is not None and t == kind
    if start is not None and not continues:
      spans.add((start, i, kind))
      start, kind = None, None
    if prefix == "B" or (prefix == "I" and not continues):
      start, kind = i, t
  return spans


def span_counts(gold: list[list[str]], pred: list[list[str]]) -> np.ndarray:
  """[true positives, predicted spans, gold spans] over sequences; a predicted span counts
  only when start, end and type all match a gold one."""
  out = np.zeros(3, np.int64)
  for g, p in zip(gold, pred, strict=True):
    gs, ps = bio_spans(g), bio_spans(p)
    out += (len(gs & ps), len(ps), len(gs))
  return out


def span_f1(counts: np.ndarray) -> dict:
  tp, n_pred, n_gold = (float(x) for x in counts)
  precision, recall = tp / max(n_pred, 1), tp / max(n_gold, 1)
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {"span_precision": precision, "span_recall": recall, "span_f1": f1}


def normalize_answer(text: str) -> str:
  return " ".join(text.split())


def exact_matches(predicted: list[str], targets: list[str]) -> int:
  """How many predictions equal their target, whitespace normalised."""
  return sum(normalize_answer(p) == normalize_answer(t) for p, t in zip(predicted, targets, strict=True))


__all__ = ["accuracy", "bio_spans", "confusion", "exact_matches", "macro_f1", "normalize_answer", "span_counts",
           "span_f1"]
