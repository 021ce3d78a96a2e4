"""Packing against pure-Python references: every token exactly once and in order, segment
ids that change exactly at document boundaries, positions restarting per segment, greedy
multi-feature packing, checkpointed carry state, and the causal-LM input shift."""

import random

import numpy as np
import pytest
import tensorflow as tf

from t5x_like.data import packing
from t5x_like.data.objectives import causal_lm_features


def _docs_ds(docs, dtype=tf.int32):
  return tf.data.Dataset.from_tensor_slices(tf.ragged.constant(docs, dtype=dtype))


def _random_docs(rng, n, seq_len):
  """Documents of varied lengths: empty, short, exactly one row, several rows long."""
  docs = []
  for i in range(n):
    length = rng.choice([0, 1, 2, seq_len - 1, seq_len, seq_len + 1, 3 * seq_len + 2,
                         rng.randint(1, 2 * seq_len)])
    # Token values encode (document, index) so misplaced tokens cannot go unnoticed.
    docs.append([1000 * (i + 1) + j for j in range(length)])
  return docs


def reference_pack_and_split(docs, seq_len):
  """Concatenate, cut, pad the tail; segments renumbered per row; positions per piece."""
  flat = [(t, d) for d, doc in enumerate(docs) for t in doc]
  rows = []
  for start in range(0, len(flat), seq_len):
    piece = flat[start:start + seq_len]
    tokens, segs, pos = [], [], []
    for j, (t, d) in enumerate(piece):
      new = j == 0 or piece[j - 1][1] != d
      segs.append(1 if j == 0 else segs[-1] + new)
      pos.append(0 if new else pos[-1] + 1)
      tokens.append(t)
    pad = seq_len - len(piece)
    rows.append((tokens + [0] * pad, segs + [0] * pad, pos + [0] * pad))
  return rows


def _rows(ds):
  return [(r["tokens"].tolist(), r["segment_ids"].tolist(), r["positions"].tolist())
          for r in ds.as_numpy_iterator()]


@pytest.mark.parametrize("seq_len, n_docs, seed", [(8, 700, 0), (16, 300, 1), (5, 40, 2)])
def test_pack_and_split_matches_reference(seq_len, n_docs, seed):
  # 700 documents span several chunks of DOCS_PER_CHUNK, so the carry between them counts.
  docs = _random_docs(random.Random(seed), n_docs, seq_len)
  rows = _rows(packing.pack_and_split(_docs_ds(docs), seq_len))
  assert rows == reference_pack_and_split(docs, seq_len)


def test_pack_and_split_invariants_without_reference():
  seq_len = 12
  docs = _random_docs(random.Random(5), 300, seq_len)
  out = list(packing.pack_and_split(_docs_ds(docs), seq_len).as_numpy_iterator())
  tokens = np.stack([r["tokens"] for r in out])
  segs = np.stack([r["segment_ids"] for r in out])
  pos = np.stack([r["positions"] for r in out])
  assert tokens.dtype == segs.dtype == pos.dtype == np.int32 and tokens.shape[1] == seq_len
  # Every token exactly once, in order; padding only in the last row.
  assert tokens[segs > 0].tolist() == [t for d in docs for t in d]
  assert (segs[:-1] > 0).all() and (tokens[segs == 0] == 0).all()
  # Rebuild the documents: a segment is one document's piece; pieces of one document are
  # consecutive (the end of one row, the start of the next) with positions restarting.
  rebuilt = {}
  for row_t, row_s, row_p in zip(tokens, segs, pos, strict=True):
    assert row_s[0] == 1
    for s in range(1, row_s.max() + 1):
      piece = row_t[row_s == s]
      assert row_p[row_s == s].tolist() == list(range(len(piece)))
      doc = piece[0] // 1000
      assert len(set(piece // 1000)) == 1  # one segment never mixes documents
      rebuilt.setdefault(doc, []).extend(piece.tolist())
  assert rebuilt == {d[0] // 1000: d for d in docs if d}


def test_pack_and_split_edge_cases():
  assert _rows(packing.pack_and_split(_docs_ds([[1, 2]]).take(0), 4)) == []
  assert _rows(packing.pack_and_split(_docs_ds([[], []]), 4)) == []
  # A total that is a multiple of seq_len needs no padding row.
  assert _rows(packing.pack_and_split(_docs_ds([[1, 2, 3], [4, 5, 6, 7, 8]]), 4)) == [
      ([1, 2, 3, 4], [1, 1, 1, 2], [0, 1, 2, 0]), ([5, 6, 7, 8], [1, 1, 1, 1], [0, 1, 2, 3])]


def test_pack_blocks_from_ragged_chunks_equals_pack_and_split():
  docs = _random_docs(random.Random(7), 100, 8)
  chunks = tf.data.Dataset.from_tensor_slices(tf.ragged.constant(docs, dtype=tf.int32))
  chunks = chunks.ragged_batch(13)  # an odd chunk size: rows straddle chunks
  blocks = list(packing.pack_blocks(chunks, 8).as_numpy_iterator())
  assert any(len(b["tokens"]) == 0 for b in blocks) or len(blocks) > 1
  rows = [(t.tolist(), s.tolist(), p.tolist()) for b in blocks
          for t, s, p in zip(b["tokens"], b["segment_ids"], b["positions"], strict=True)]
  assert rows == reference_pack_and_split(docs, 8)


def test_pack_and_split_iterator_checkpoint_keeps_the_carry(tmp_path):
  docs = _random_docs(random.Random(3), 600, 10)
  ds = packing.pack_and_split(_docs_ds(docs), 10)
  it = iter(ds)
  for _ in range(7):
    next(it)
  ckpt = tf.train.Checkpoint(iterator=it)
  path = ckpt.save(str(tmp_path / "ckpt"))
  expected = [next(it)["tokens"].numpy().tolist() for _ in range(400)]
  fresh = iter(packing.pack_and_split(_docs_ds(docs), 10))
  tf.train.Checkpoint(iterator=fresh).restore(path)
  assert [next(fresh)["tokens"].numpy().tolist() for _ in range(400)] == expected


# ---------------------------------------------------------------- pack_greedy


def reference_pack_greedy(examples, seq_lens):
  keys = sorted(seq_lens)
  rows, cur = [], None

  def blank():
    return {k: ([], [], []) for k in keys}

  for ex in examples:
    ex = {k: list(ex[k][:seq_lens[k]]) for k in keys}
    if not any(ex.values()):
      continue
    if cur is None or any(len(cur[1][k][0]) + len(ex[k]) > seq_lens[k] for k in keys):
      if cur is not None:
        rows.append(cur[1])
      cur = [0, blank()]
    cur[0] += 1
    for k in keys:
      cur[1][k][0].extend(ex[k])
      cur[1][k][1].extend([cur[0]] * len(ex[k]))
      cur[1][k][2].extend(range(len(ex[k])))
  if cur is not None:
    rows.append(cur[1])
  out = []
  for row in rows:
    flat = {}
    for k in keys:
      pad = [0] * (seq_lens[k] - len(row[k][0]))
      flat[k], flat[f"{k}_segment_ids"], flat[f"{k}_positions"] = (x + pad for x in row[k])
    out.append(flat)
  return out


@pytest.mark.parametrize("dtype", [tf.int32, tf.int64])
def test_pack_greedy_matches_reference(dtype):
  rng = random.Random(11)
  seq_lens = {"inputs": 16, "targets": 6}
  examples = []
  for i in range(150):
    n_in = rng.choice([0, 1, 3, 7, 16, 20])  # 20 > 16: truncated
    n_tg = rng.choice([0, 1, 2, 5, 6])
    examples.append({"inputs": [100 * i + j + 1 for j in range(n_in)],
                     "targets": [100 * i + 50 + j for j in range(n_tg)]})
  ds = tf.data.Dataset.from_tensor_slices(
      {k: tf.ragged.constant([e[k] for e in examples], dtype=dtype) for k in seq_lens})
  got = [{k: v.tolist() for k, v in row.items()}
         for row in packing.pack_greedy(ds, seq_lens).as_numpy_iterator()]
  assert got == reference_pack_greedy(examples, seq_lens)
  assert len(got) > 20
  row = next(packing.pack_greedy(ds, seq_lens).as_numpy_iterator())
  assert row["inputs"].dtype == dtype.as_numpy_dtype and row["inputs_segment_ids"].dtype == np.int32


def test_pack_greedy_rejects_missing_feature():
  ds = tf.data.Dataset.from_tensors({"inputs": tf.constant([1, 2])})
  with pytest.raises(ValueError, match="targets"):
    packing.pack_greedy(ds, {"inputs": 4, "targets": 4})


# ---------------------------------------------------------------- causal LM features


def reference_shift(tokens, segs):
  inputs = np.zeros_like(tokens)
  for j in range(1, tokens.shape[-1]):
    same = (segs[..., j] == segs[..., j - 1]) & (segs[..., j] > 0)
    inputs[..., j] = np.where(same, tokens[..., j - 1], 0)
  return inputs


def test_causal_lm_features_shift_within_segments():
  docs = _random_docs(random.Random(9), 80, 16)
  rows = list(packing.pack_and_split(_docs_ds(docs), 16).as_numpy_iterator())
  for row in rows[:20]:  # one row at a time
    f = {k: v.numpy() for k, v in causal_lm_features(row).items()}
    np.testing.assert_array_equal(f["decoder_input_tokens"],
                                  reference_shift(row["tokens"], row["segment_ids"]))
  batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}  # and as one batch
  f = {k: v.numpy() for k, v in causal_lm_features(batch).items()}
  np.testing.assert_array_equal(f["decoder_input_tokens"],
                                reference_shift(batch["tokens"], batch["segment_ids"]))
  np.testing.assert_array_equal(f["decoder_target_tokens"], batch["tokens"])
  np.testing.assert_array_equal(f["decoder_segment_ids"], batch["segment_ids"])
  np.testing.assert_array_equal(f["decoder_positions"], batch["positions"])
  assert f["decoder_loss_weights"].dtype == np.float32
  np.testing.assert_array_equal(f["decoder_loss_weights"], (batch["segment_ids"] > 0) * 1.0)
  assert (f["decoder_input_tokens"][batch["positions"] == 0] == 0).all()
