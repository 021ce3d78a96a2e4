"""Exact and near-duplicate removal: planted near copies go, distinct documents stay."""

import numpy as np
import pytest
from clean_corpus import CLEAN, planted_corpus

from t5x_like.data.clean import dedup, minhash
from t5x_like.data.clean.options import CleanOptions


def _near(docs, threshold, num_perm=128):
  sigs = [((0, i), minhash.signature(d, 5, num_perm, 1).tobytes()) for i, d in enumerate(docs)]
  return {k[1] for k in dedup.near_duplicates(sigs, threshold, num_perm)}


def test_exact_duplicates_keep_the_first_in_input_order():
  hashes = [((0, 2), b"x"), ((0, 0), b"x"), ((0, 1), b"y"), ((1, 0), b"x")]
  assert dedup.exact_duplicates(hashes) == {(0, 2), (1, 0)}


def test_signature_estimates_jaccard():
  a = CLEAN
  b = CLEAN.replace("Tuesday", "Friday").replace("shelves", "desks")
  sa, sb = minhash.shingles(a, 5), minhash.shingles(b, 5)
  true = len(sa & sb) / len(sa | sb)
  est = minhash.similarity(minhash.signature(a, 5, 256, 1), minhash.signature(b, 5, 256, 1))
  assert abs(est - true) < 0.1
  # A fixed seed: the same text, the same signature, in any process.
  np.testing.assert_array_equal(minhash.signature(a, 5, 128, 1), minhash.signature(a, 5, 128, 1))


def test_planted_near_copies_go_and_distinct_documents_stay():
  docs, distinct, copies = planted_corpus(400, 100, seed=3)
  removed = _near(docs, CleanOptions().jaccard)
  recall = len(removed & copies) / len(copies)
  false_positive = len(removed & distinct) / len(distinct)
  assert recall >= 0.9, recall
  assert false_positive < 0.01, false_positive


@pytest.mark.parametrize("threshold", [0.5, 0.9])
def test_threshold_moves_recall(threshold):
  # Copies with up to 12 edits: a strict threshold keeps many of them, a loose one does not.
  docs, distinct, copies = planted_corpus(200, 100, seed=4, max_edits=12)
  recall = len(_near(docs, threshold) & copies) / len(copies)
  assert (recall > 0.9) if threshold == 0.5 else (recall < 0.5), recall


def test_buckets_are_decided_by_input_position_in_any_order():
  docs, _, _ = planted_corpus(30, 10, seed=5)
  sigs = [((0, i), minhash.signature(d, 5, 128, 1).tobytes()) for i, d in enumerate(docs)]
  assert dedup.near_duplicates(sigs, 0.8, 128) == dedup.near_duplicates(sigs[::-1], 0.8, 128)
