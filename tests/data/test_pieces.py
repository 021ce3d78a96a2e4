"""The training order of file sources (`readers/pieces.py`): a single in-order file is
covered evenly from the first documents drawn, the order is seeded, hosts stay disjoint,
and a saved iterator resumes mid-epoch exactly. Documents are tiny and numbered, so the
reader is checked on 50k of them in seconds."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from t5x_like.data import readers
from t5x_like.data.readers import pieces

N_DOCS = 50_000


@pytest.fixture(scope="module")
def in_order(tmp_path_factory):
  """One file of N_DOCS numbered documents in order, with a "\\r\\n" line and a last line
  without a newline (both read as TextLineDataset reads them)."""
  path = tmp_path_factory.mktemp("in_order") / "manual.txt"
  # 48 bytes each: 2.4 MB, cut into 128 pieces of more than pieces.MIN_PIECE_BYTES.
  lines = [f"doc {i:06d} of the manual, in file order ......." for i in range(N_DOCS)]
  path.write_bytes(("\n".join(lines[:-2]) + "\n" + lines[-2] + "\r\n" + lines[-1]).encode())
  return str(path)


def _docs(make_cfg, path, host=0, hosts=1, seed=0, repeat=True, **kw):
  cfg = make_cfg(train_files=path, shuffle_buffer=10_000, **kw)
  reader = readers.reader_for(cfg)
  return reader.documents(reader.input_for("train"), readers.Share(host, hosts, True, repeat, seed))


def _numbers(ds, n=None):
  """The document numbers of the first `n` documents (all when None), read in batches:
  one Python step per document would take most of the test's time."""
  if n:
    ds = ds.take(n)
  return [int(x.split()[1]) for batch in ds.batch(4096).as_numpy_iterator() for x in batch]


def test_first_5000_documents_cover_every_tenth_evenly(make_cfg, in_order):
  first = _numbers(_docs(make_cfg, in_order), 5_000)
  per_tenth = collections.Counter(i * 10 // N_DOCS for i in first)
  assert len(set(first)) == 5_000
  for tenth in range(10):  # 500 each if uniform
    assert 400 <= per_tenth[tenth] <= 600, sorted(per_tenth.items())


def test_an_epoch_is_every_document_once(make_cfg, in_order):
  assert sorted(_numbers(_docs(make_cfg, in_order, repeat=False))) == list(range(N_DOCS))


def test_same_seed_same_stream_other_seed_differs(make_cfg, in_order):
  a = _numbers(_docs(make_cfg, in_order, seed=1), 2_000)
  assert a == _numbers(_docs(make_cfg, in_order, seed=1), 2_000)
  assert a != _numbers(_docs(make_cfg, in_order, seed=2), 2_000)


@pytest.mark.parametrize("hosts", [3])
def test_hosts_are_disjoint_and_cover_the_file(make_cfg, in_order, tmp_path, hosts):
  # One file: every host reads the same seeded strata and keeps every P-th document.
  per_host = [_numbers(_docs(make_cfg, in_order, host, hosts, repeat=False)) for host in range(hosts)]
  assert sorted(sum(per_host, [])) == list(range(N_DOCS))
  # Several files: each host reads its own files, cut into strata the same way.
  lines = [f"doc {i:06d}" for i in range(3_000)]
  for i in range(4):
    (tmp_path / f"part-{i}.txt").write_text("\n".join(lines[i * 750:(i + 1) * 750]) + "\n")
  per_host = [set(_numbers(_docs(make_cfg, str(tmp_path / "part-*.txt"), host, hosts, repeat=False)))
              for host in range(hosts)]
  assert sorted(set().union(*per_host)) == list(range(3_000)) and sum(map(len, per_host)) == 3_000


def test_resume_mid_epoch_continues_exactly(make_cfg, in_order, tmp_path):
  def stream():  # batches of 1,000 documents: a test of the reader's state, not of Python steps
    return iter(_docs(make_cfg, in_order, seed=3).batch(1_000))

  it = stream()
  for _ in range(12):  # past the buffer's first fill, inside the first epoch
    next(it)
  path = tf.train.Checkpoint(iterator=it).save(str(tmp_path / "docs"))
  want = [next(it).numpy() for _ in range(4)]
  fresh = stream()
  tf.train.Checkpoint(iterator=fresh).restore(path).assert_consumed()
  for batch in want:
    np.testing.assert_array_equal(next(fresh).numpy(), batch)


def test_pieces_cut_at_line_starts_and_read_like_text_lines(tmp_path, monkeypatch):
  monkeypatch.setattr(pieces, "MIN_PIECE_BYTES", 1)  # cut a 1 KB file
  path = tmp_path / "lines.txt"
  many = [f"line {i}" for i in range(100)]
  raw = b"a\r\nbb\n\nccc\n" + b"x" * 1000 + b"\n" + "\n".join(many).encode() + b"\nlast"
  path.write_bytes(raw)
  size = len(raw)
  parts = pieces.plan([str(path)], [size], [(0, -1)], True, streams=8)
  assert len(parts) > 3 and parts[0].start == 0 and parts[-1].end == size
  assert all(a.end == b.start for a, b in zip(parts, parts[1:], strict=False))
  assert all(raw[p.start - 1:p.start] == b"\n" for p in parts[1:])  # whole lines only
  assert [p.skip for p in parts] == [raw[:p.start].count(b"\n") for p in parts]  # line numbers
  got = []
  for p in parts:
    got += [x.decode() for _, b in pieces.line_blocks(str(path), p.start, p.end, size).as_numpy_iterator() for x in b]
  want = [x.decode() for x in tf.data.TextLineDataset(str(path)).as_numpy_iterator()]
  assert got == want == ["a", "bb", "", "ccc", "x" * 1000, *many, "last"]


def test_a_line_longer_than_a_read_block_is_whole(tmp_path):
  long = "y" * (3 * pieces.READ_BYTES + 17)
  path = tmp_path / "long.txt"
  path.write_text(f"first\n{long}\nend\n")
  size = path.stat().st_size
  got = pieces.line_blocks(str(path), 0, size, size).flat_map(lambda n, b: tf.data.Dataset.from_tensor_slices(b))
  assert [x.decode() for x in got.as_numpy_iterator()] == ["first", long, "end"]


def test_a_checkpoint_inside_a_long_line_resumes_it(tmp_path):
  """The unfinished line's fragments are iterator state: saved mid-line, restored, the line
  comes out whole."""
  long = "".join(chr(97 + i % 26) for i in range(5 * pieces.READ_BYTES + 3))
  path = tmp_path / "long.txt"
  path.write_text(f"first\n{long}\nend")
  size = path.stat().st_size
  blocks = pieces.line_blocks(str(path), 0, size, size)
  it = iter(blocks)
  seen = [next(it) for _ in range(3)]  # the first block's "first", then two fragments of the long line
  assert [x.numpy().decode() for _, b in seen for x in b] == ["first"]
  saved = tf.train.Checkpoint(iterator=it).save(str(tmp_path / "mid"))
  fresh = iter(blocks)
  tf.train.Checkpoint(iterator=fresh).restore(saved).assert_consumed()
  rest = [(int(n), [x.decode() for x in b.numpy()]) for n, b in fresh]
  assert [line for _, b in rest for line in b] == [long, "end"]
  assert [n for n, b in rest if b] == [1, 2]  # lines before each block that has lines


def test_strata_are_consecutive_and_balanced():
  parts = [pieces.Piece("f", 1000, 10 * i, 10 * (i + 1)) for i in range(100)]
  groups = pieces.strata(parts, streams=10)
  assert groups == [list(range(10 * k, 10 * (k + 1))) for k in range(10)]
  assert np.all(np.diff(sum(groups, [])) == 1)
