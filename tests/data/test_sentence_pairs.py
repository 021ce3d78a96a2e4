"""Next-sentence pairs and SimCSE rows (data/sentence_pairs.py) against their definitions."""

import numpy as np
import pytest
import tensorflow as tf

from t5x_like import config as C
from t5x_like import features as F
from t5x_like.data import pipeline, sentence_pairs

EOS = 1


def _docs(n, rng):
  """Documents whose tokens name them: doc i, token j is 1000 * (i + 1) + j."""
  return [[1000 * (i + 1) + j for j in range(rng.integers(2, 40))] + [EOS] for i in range(n)]


@pytest.mark.parametrize("random_from", ["start", "cut"])
def test_nsp_pairs_are_continuations_half_the_time(random_from):
  rng = np.random.default_rng(0)
  labels, seq_len = [], 24
  for block in range(16):
    docs = _docs(256, rng)
    out = sentence_pairs.nsp_pairs(tf.ragged.constant(docs, tf.int32), tf.constant(block, tf.int64), seed=5,
                                   seq_len=seq_len, eos=EOS, probability_random=0.5, random_from=random_from)
    for row, types, label in zip(out["tokens"].numpy(), out["types"].numpy(), out["labels"].numpy()[:, 0],
                                 strict=True):
      n = int((row != 0).sum())
      assert 4 <= n <= seq_len
      first_eos = int(np.argmax(row == EOS))
      a, b = row[:first_eos], row[first_eos + 1:n - 1]
      assert row[n - 1] == EOS and len(a) >= 1 and len(b) >= 1
      assert types[:n].tolist() == [0] * (first_eos + 1) + [1] * (n - first_eos - 1)
      doc_a, doc_b = a[0] // 1000, b[0] // 1000
      assert (a // 1000 == doc_a).all() and (b // 1000 == doc_b).all()
      assert (np.diff(a) == 1).all() and (np.diff(b) == 1).all()  # contiguous pieces
      if label == 0:  # B continues A right where A was cut
        assert doc_a == doc_b and b[0] == a[-1] + 1
      else:
        assert doc_a != doc_b
        if random_from == "start":  # the other document from its first token
          assert b[0] % 1000 == 0
      labels.append(label)
  assert abs(np.mean(labels) - 0.5) < 0.02  # 4,096 pairs: 3 standard deviations is 0.023


def test_simcse_rows_repeat_each_document_as_segment_two():
  docs = [[5, 6, 7, EOS], [8, EOS]]
  out = sentence_pairs.simcse_rows(tf.ragged.constant(docs, tf.int32), seq_len=8, eos=EOS)
  assert out[F.ENCODER_INPUT_TOKENS].numpy().tolist() == [[5, 6, 7, EOS, 5, 6, 7, EOS], [8, EOS, 8, EOS, 0, 0, 0, 0]]
  assert out[F.ENCODER_SEGMENT_IDS].numpy().tolist() == [[1, 1, 1, 1, 2, 2, 2, 2], [1, 1, 2, 2, 0, 0, 0, 0]]
  assert out[F.ENCODER_POSITIONS].numpy().tolist() == [[0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 0, 1, 0, 0, 0, 0]]


def test_mlm_nsp_pipeline_masks_pairs_and_labels_them(corpus, spm_path):
  data = C.replace(C.Config(), data={"source": "text", "objective": "mlm_nsp", "seq_len": 32,
                                     "shuffle_buffer": 64}).data
  ds = pipeline.make_dataset(data, files=corpus["train"], tokenizer_path=spm_path, batch_size=64)
  batch = next(iter(ds))
  labels = batch[F.ENCODER_CLASS_LABELS].numpy()
  assert labels.shape == (64, 1) and set(labels[:, 0].tolist()) == {0, 1}
  types, weights = batch[F.ENCODER_TOKEN_TYPE_IDS].numpy(), batch[F.ENCODER_LOSS_WEIGHTS].numpy()
  assert types.max() == 1 and (types[:, 0] == 0).all()
  assert 0.05 < weights.sum() / (batch[F.ENCODER_SEGMENT_IDS].numpy() > 0).sum() < 0.25  # about 15% masked
