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


def test_shuffle_buffer_holds_at_most_its_mib_of_text(make_cfg):
  from t5x_like.data.readers.base import shuffle_size

  cfg = make_cfg(shuffle_buffer=10_000, shuffle_buffer_mib=64)
  assert shuffle_size(cfg, None) == 10_000  # size unknown: documents only
  assert shuffle_size(cfg, 2_000) == 10_000  # 20 MB of ordinary documents fit
  assert shuffle_size(cfg, LONG) == 64 * 2**20 // LONG == 1024  # long documents, cut
  assert shuffle_size(make_cfg(shuffle_buffer_mib=1), 4 * 2**20) == 1


def test_mean_document_bytes_samples_lines_and_records(make_cfg, tmp_path):
  from t5x_like.data.readers import tfrecord

  short = tmp_path / "short.txt"
  short.write_text("".join("w" * 99 + "\n" for _ in range(5_000)))  # 100 bytes a line
  one_line = tmp_path / "one.txt"
  one_line.write_text(_text(400_000, seed=1))  # ~1.5 MB, no newline
  empty = tmp_path / "empty.txt"
  empty.write_text("")

  def mean(path, source="text"):
    reader = reader_for(make_cfg(source=source))
    return reader.mean_document_bytes(reader.input_for("train", str(path)), Share())

  assert mean(short) == 100
  assert mean(one_line) == LONG  # cut by training to about LONG bytes a document
  assert mean(empty) is None
  # Both files: the sample spreads over them (100-byte lines and one long line).
  assert mean(tmp_path / "[so]*.txt") == (2**20 + 500_000) / 5_000
  rec = tmp_path / "r.tfrecord"
  with tf.io.TFRecordWriter(str(rec)) as w:
    for i in range(300):
      w.write(tf.train.Example(features=tf.train.Features(feature={"text": tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[b"y" * (1000 + i)]))})).SerializeToString())
  assert 1000 < mean(rec, "tfrecord") < 1320  # the records' own bytes, a few of framing
  assert isinstance(reader_for(make_cfg(source="tfrecord")), tfrecord.TFRecordReader)


def test_long_documents_keep_the_saved_iterator_small(make_cfg, tmp_path, capsys):
  """A one-line 600 KB file: a buffer of 120 documents holds its 9 cut parts 13 times over
  (about 8 MB of text, saved with the iterator); at 1 MiB of text it holds 16, and says so."""
  import string

  rng = random.Random(2)
  path = tmp_path / "one.txt"
  path.write_text(" ".join("".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(1, 9)))
                           for _ in range(100_000)) + "\n")
  sizes = {}
  for mib in (1, 64):
    reader = reader_for(make_cfg(shuffle_buffer=120, shuffle_buffer_mib=mib))
    it = iter(reader.documents(reader.input_for("train", str(path)), Share(0, 1, shuffle=True, repeat=True)))
    assert 0 < len(next(it).numpy()) < 2 * LONG
    tf.train.Checkpoint(iterator=it).write(str(tmp_path / f"it{mib}" / "ckpt"))
    sizes[mib] = sum(f.stat().st_size for f in (tmp_path / f"it{mib}").iterdir())
    reduced = [line for line in capsys.readouterr().out.splitlines() if "shuffle buffer holds" in line]
    assert len(reduced) == (mib == 1), reduced
    if reduced:
      assert f"{path}: documents of about 6" in reduced[0] and "holds 16 of them" in reduced[0], reduced
  assert sizes[1] < 4 * 2**20 and sizes[64] > 2 * sizes[1], sizes
