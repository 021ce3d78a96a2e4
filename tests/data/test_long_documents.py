"""Long documents: cut at whitespace for training, read whole for evaluation."""

import random

import pytest
import tensorflow as tf

from t5x_like.data import long_documents
from t5x_like.data.readers import Share, reader_for

LONG = long_documents.LONG_DOC_BYTES


def _text(n_words, seed=0):
  rng = random.Random(seed)
  words = ["a", "bb", "river", "count", "x" * 150, "é", "12"]  # a long word, a 2-byte character
  return " ".join(rng.choice(words) for _ in range(n_words))


def _cut(docs):
  return [x.decode() for x in long_documents.cut(tf.constant(docs)).numpy()]


def test_cut_replaces_each_long_document_in_place_by_parts_that_join_to_it():
  long1, long2 = _text(40_000, seed=1), _text(25_000, seed=2)
  assert len(long1.encode()) > 3 * LONG and len(long2.encode()) > 2 * LONG
  docs = ["short", long1, "", _text(50), long2, "y" * (2 * LONG + 5)]
  out = _cut(docs)
  # Walk the output: short documents come back unchanged, long ones as consecutive parts.
  i = 0
  for doc in docs:
    if len(doc.encode()) <= LONG:
      assert out[i] == doc
      i += 1
      continue
    parts = []
    while "".join(parts) != doc:
      assert doc.startswith("".join(parts) + out[i])
      parts.append(out[i])
      i += 1
    # About LONG bytes each (PER pieces of 1,000 characters and up to 201 more), the last shorter.
    most = long_documents.PER * (long_documents.PIECE_CHARS + 201) * 2  # 2 bytes per character at most
    sizes = [len(p.encode()) for p in parts]
    assert len(parts) >= 2 and all(LONG // 2 < n <= most for n in sizes[:-1]), sizes
    assert 0 < sizes[-1] <= most
    if " " in doc:  # words under 200 characters: every cut is after a space
      assert all(p[-1] == " " for p in parts[:-1]) and not any(p[0] == " " for p in parts[1:])
    else:  # no whitespace: cut every PER pieces of 1,000 characters
      assert sizes[:-1] == [long_documents.PER * long_documents.PIECE_CHARS] * (len(parts) - 1)
  assert i == len(out)


def test_a_block_without_long_documents_is_unchanged():
  docs = ["one", "", "two three", "z" * LONG]
  assert _cut(docs) == docs


@pytest.mark.parametrize("source", ["text", "jsonl"])
def test_training_reads_long_documents_cut_and_evaluation_whole(make_cfg, tmp_path, source):
  long = _text(30_000, seed=3)
  docs = ["first", long, "last"]
  if source == "text":
    path = tmp_path / "d.txt"
    path.write_text("\n".join(docs) + "\n")
  else:
    import json
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
  cfg = make_cfg(source=source)
  reader = reader_for(cfg)
  inp = reader.input_for("train", str(path))

  def read(shuffle):
    ds = reader.documents(inp, Share(0, 1, shuffle=shuffle, repeat=False, seed=0))
    return [x.decode() for x in ds.as_numpy_iterator()]

  assert read(False) == docs
  train = read(True)
  parts = _cut([long])
  assert len(parts) > 1 and sorted(train) == sorted(["first", "last"] + parts)
