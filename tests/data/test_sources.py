"""Sources beyond plain text: TFRecord files and TFDS datasets read like text (same
documents), per-host shares that are disjoint and cover every document once for any host
count, seeded determinism, iterator checkpoints, and bad input: plain errors naming the
file and line, or skipped and counted records with data.skip_bad_lines."""

import collections
import json
import time

import numpy as np
import pytest
import tensorflow as tf
from data_streams import documents, expected_documents, lines_of, take  # tests/data/data_streams.py

from t5x_like import cli
from t5x_like.data import pipeline, readers
from t5x_like.data.build import build_tfds
from t5x_like.data.readers import checks
from t5x_like.data.readers import tfds as tfds_reader
from t5x_like.data.tokenizer import DataError

BATCH = 4


def _write_tfrecords(path, docs, feature="text"):
  with tf.io.TFRecordWriter(str(path)) as w:
    for doc in docs:
      value = tf.train.Feature(bytes_list=tf.train.BytesList(value=[doc.encode()]))
      w.write(tf.train.Example(features=tf.train.Features(feature={feature: value}))
              .SerializeToString())


@pytest.fixture(scope="module")
def lines(corpus):
  return lines_of(corpus["eval"])[:120]


@pytest.fixture(scope="module")
def tfrecord_glob(lines, tmp_path_factory):
  out = tmp_path_factory.mktemp("tfrecord")
  for i in range(3):  # uneven shards: 40 documents each, split 3 ways by hosts below
    _write_tfrecords(out / f"part-{i}.tfrecord", lines[i::3])
  return str(out / "*.tfrecord")


@pytest.fixture(scope="module")
def tfds_dir(lines, tmp_path_factory):
  out = tmp_path_factory.mktemp("tfds")
  (out / "docs.txt").write_text("\n".join(lines) + "\n")
  build_tfds(str(out / "docs.txt"), "t5x_like_test_docs", str(out / "data"),
             validation_fraction=0.25)
  return str(out / "data")


def _cfg(make_cfg, source, tfrecord_glob="", tfds_dir="", **kw):
  if source == "tfrecord":
    kw.update(train_files=tfrecord_glob)
  if source == "tfds":
    kw.update(tfds_name="t5x_like_test_docs", tfds_data_dir=tfds_dir)
  return make_cfg(source=source, **kw)


def test_tfrecord_source_matches_text_source(make_cfg, spm_path, lines, tmp_path):
  _write_tfrecords(tmp_path / "docs.tfrecord", lines)
  (tmp_path / "docs.txt").write_text("\n".join(lines) + "\n")
  got = take(pipeline.make_dataset(make_cfg(source="tfrecord"), files=str(tmp_path / "*.tfrecord"),
                                       tokenizer_path=spm_path, batch_size=BATCH, shuffle=False,
                                       repeat=False))
  want = take(pipeline.make_dataset(make_cfg(), files=str(tmp_path / "*.txt"), tokenizer_path=spm_path,
                                        batch_size=BATCH, shuffle=False, repeat=False))
  assert len(got) == len(want)
  for a, b in zip(got, want, strict=True):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("source, split, counts", [
    ("tfds", "train", (3, 4)), ("tfds/as_dataset", "validation", (1, 2)), ("tfrecord", "", (2, 5))])
def test_hosts_are_disjoint_and_read_every_document_once(make_cfg, lines, tfrecord_glob, tfds_dir,
                                                         monkeypatch, source, split, counts):
  # TFDS: even example ranges per host (90 train documents: 23, 23, 22, 22 for 4 hosts),
  # read from the shards directly or (any other TFDS data) through as_dataset. TFRecord:
  # whole files for up to 3 hosts, every P-th record for more (3 files). Shuffled, as in
  # training, but one epoch.
  if source == "tfds/as_dataset":
    source = "tfds"
    monkeypatch.setattr(tfds_reader, "plain_text_shards", lambda builder, key: False)
  cfg = _cfg(make_cfg, source, tfrecord_glob, tfds_dir)
  # build_tfds holds out every 4th document for validation_fraction=0.25.
  want = {"train": [x for i, x in enumerate(lines) if i % 4 != 3], "validation": lines[3::4],
          "": lines}[split]
  for count in counts:
    per_host = []
    for host in range(count):
      reader = readers.reader_for(cfg)
      role = "eval" if split == "validation" else "train"  # data.tfds.eval_split is "validation"
      inp = reader.input_for(role, tfrecord_glob if source == "tfrecord" else "")
      ds = reader.documents(inp, readers.Share(host, count, shuffle=True, repeat=False, seed=3))
      per_host.append(collections.Counter(x.decode() for x in ds.as_numpy_iterator()))
      assert per_host[-1], f"host {host} of {count} got no documents"
    assert sum(per_host, collections.Counter()) == collections.Counter(want), count
    for i in range(count):
      for j in range(i + 1, count):
        assert not (per_host[i] & per_host[j])


def test_tfds_source_reads_the_split_of_the_role(make_cfg, spm_path, tok, lines, tfds_dir):
  """The trainer's eval call (repeat=False, no files) reads data.tfds.eval_split."""
  ds = pipeline.make_dataset(_cfg(make_cfg, "tfds", tfds_dir=tfds_dir), files="", tokenizer_path=spm_path,
                             batch_size=BATCH, shuffle=False, repeat=False)
  assert collections.Counter(documents(take(ds), tok.eos_id, complete=False)) == expected_documents(tok, lines[3::4])


@pytest.mark.parametrize("source", ["tfds", "tfrecord"])
def test_seeded_and_resumable(make_cfg, spm_path, tfrecord_glob, tfds_dir, tmp_path, source):
  def make(seed):
    cfg = _cfg(make_cfg, source, tfrecord_glob, tfds_dir, seed=seed, shuffle_buffer=16)
    return pipeline.make_dataset(cfg, files="", tokenizer_path=spm_path, batch_size=BATCH)

  a, c = take(make(1), 12), take(make(2), 12)
  assert any((x["decoder_target_tokens"] != z["decoder_target_tokens"]).any()
             for x, z in zip(a, c, strict=True))
  it = iter(make(1))
  for x in a:  # the same seed gives the same batches
    np.testing.assert_array_equal(next(it)["decoder_target_tokens"].numpy(), x["decoder_target_tokens"])
  # Past the first epoch (~20 batches), so file order, shuffle buffer and packer hold state.
  for _ in range(18):
    next(it)
  path = tf.train.Checkpoint(iterator=it).save(str(tmp_path / "data"))
  expected = [next(it) for _ in range(8)]
  fresh = iter(make(1))
  tf.train.Checkpoint(iterator=fresh).restore(path).assert_consumed()
  for want in expected:
    np.testing.assert_array_equal(next(fresh)["decoder_target_tokens"].numpy(),
                                  want["decoder_target_tokens"].numpy())


def test_tfds_errors_name_the_dataset_and_the_fix(make_cfg, spm_path, tfds_dir):
  def make(**kw):
    cfg = make_cfg(source="tfds", **{"tfds_data_dir": tfds_dir, **kw})
    return pipeline.make_dataset(cfg, files="", tokenizer_path=spm_path, batch_size=BATCH)

  with pytest.raises(DataError, match=rf"'no_such_corpus' .*{tfds_dir}.*t5x-like data build"):
    make(tfds_name="no_such_corpus")
  with pytest.raises(DataError, match=r"'mnist' .*is not prepared in .*never downloaded"):
    make(tfds_name="mnist")  # in the TFDS catalog, but not in this data_dir
  with pytest.raises(DataError, match=r"no string feature 'body' .*it has: text \(string\)"):
    make(tfds_name="t5x_like_test_docs", tfds_text_key="body")
  with pytest.raises(DataError, match=r"split 'dev' .*data.tfds.train_split"):
    make(tfds_name="t5x_like_test_docs", tfds_train_split="dev")
  with pytest.raises(DataError, match=r"'train\[:2\]' .* has 2 examples, fewer than the 3 hosts"):
    pipeline.make_dataset(make_cfg(source="tfds", tfds_name="t5x_like_test_docs", tfds_data_dir=tfds_dir,
                                   tfds_train_split="train[:2]"),
                          files="", tokenizer_path=spm_path, batch_size=BATCH, process_index=2,
                          process_count=3)


def _first_error(ds):
  with pytest.raises(tf.errors.InvalidArgumentError) as e:
    take(ds)
  err = readers.as_data_error(e.value)
  assert isinstance(err, DataError)
  return str(err)


def test_bad_records_fail_naming_the_file_and_line(make_cfg, spm_path, lines, tmp_path):
  good = [line.encode() for line in lines] * 3  # the bad line is past the first check block
  (tmp_path / "a.txt").write_bytes(b"\n".join(good[:299] + [b"caf\xe9 latin-1"] + good[299:]) + b"\n")
  make = dict(tokenizer_path=spm_path, batch_size=BATCH, shuffle=False, repeat=False)
  msg = _first_error(pipeline.make_dataset(make_cfg(), files=str(tmp_path / "a.txt"), **make))
  assert msg.startswith(f"{tmp_path / 'a.txt'}: line 300 is not UTF-8; ") and "skip_bad_lines" in msg
  (tmp_path / "b.jsonl").write_text('{"text": "a b"}\n\n{"body": "x"}\n')
  msg = _first_error(pipeline.make_dataset(make_cfg(source="jsonl"), files=str(tmp_path / "b.jsonl"), **make))
  assert msg.startswith(f'{tmp_path / "b.jsonl"}: line 3 has no string field "text" (data.jsonl.field)')
  with tf.io.TFRecordWriter(str(tmp_path / "c.tfrecord")) as w:
    for i in range(5):
      key = "body" if i == 3 else "text"
      value = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"ok"]))
      w.write(tf.train.Example(features=tf.train.Features(feature={key: value})).SerializeToString())
  msg = _first_error(pipeline.make_dataset(make_cfg(source="tfrecord"), files=str(tmp_path / "c.tfrecord"),
                                           **make))
  assert msg.startswith(f"{tmp_path / 'c.tfrecord'}: record 4 has no bytes feature 'text'")
  # Problems visible before reading are DataErrors at once.
  (tmp_path / "empty.tfrecord").write_bytes(b"")
  with pytest.raises(DataError, match=r"all 1 files matching .*empty\.tfrecord.* are empty"):
    pipeline.make_dataset(make_cfg(source="tfrecord"), files=str(tmp_path / "empty.tfrecord"), **make)
  with pytest.raises(DataError, match=r"a\.txt \(data\.eval_files\) is not a TFRecord file"):
    pipeline.make_dataset(make_cfg(source="tfrecord"), files=str(tmp_path / "a.txt"), **make)
  with pytest.raises(DataError, match=r"has no bytes feature 'body'; it has: text \(bytes_list\)"):
    pipeline.make_dataset(make_cfg(source="tfrecord", tfrecord_feature="body"),
                          files=str(tmp_path / "c.tfrecord"), **make)


def test_skip_bad_lines_drops_and_counts_them(make_cfg, spm_path, tok, lines, tmp_path, capfd):
  docs = lines[:40]
  raw = []
  for i, line in enumerate(docs):
    raw.append(json.dumps({"text": line}).encode())
    if i % 10 == 5:
      raw += [b'{"text": "\xff\xfe"}', b'{"title": "no text"}', b'']
  (tmp_path / "d.jsonl").write_bytes(b"\n".join(raw) + b"\n")
  cfg = make_cfg(source="jsonl", skip_bad_lines=True)
  ds = pipeline.make_dataset(cfg, files=str(tmp_path / "d.jsonl"), tokenizer_path=spm_path,
                             batch_size=BATCH, shuffle=False, repeat=False)
  assert documents(take(ds), tok.eos_id, complete=False) == [tuple(tok.encode(x) + [tok.eos_id]) for x in docs]
  name = f"data.eval_files {tmp_path / 'd.jsonl'}"
  assert pipeline.skipped_lines()[name] == 8  # 4 x (not UTF-8 + no field); blank lines are not bad
  assert f"t5x_like data: 8 bad records skipped so far in {name}" in capfd.readouterr().err
  # The counter is a variable, which tf.data cannot checkpoint: the stream still resumes.
  train = pipeline.make_dataset(cfg, files=str(tmp_path / "d.jsonl"), tokenizer_path=spm_path,
                                batch_size=BATCH)
  it = iter(train)
  for _ in range(20):
    next(it)
  assert pipeline.skipped_lines()[f"data.train_files {tmp_path / 'd.jsonl'}"] >= 8
  path = tf.train.Checkpoint(iterator=it).save(str(tmp_path / "ckpt"))
  want = next(it)["decoder_target_tokens"].numpy()
  fresh = iter(pipeline.make_dataset(cfg, files=str(tmp_path / "d.jsonl"), tokenizer_path=spm_path,
                                     batch_size=BATCH))
  tf.train.Checkpoint(iterator=fresh).restore(path).assert_consumed()
  np.testing.assert_array_equal(next(fresh)["decoder_target_tokens"].numpy(), want)


def test_cli_prints_a_bad_line_as_one_error_line(spm_path, lines, tmp_path, capsys):
  (tmp_path / "e.txt").write_bytes(b"\n".join([x.encode() for x in lines[:5]] + [b"\x80 stray"]) + b"\n")
  (tmp_path / "cfg.py").write_text(f"""
from t5x_like.config import Config, DataConfig, ModelConfig, TokenizerConfig
def get_config():
  return Config(model=ModelConfig(vocab_size=1024), data=DataConfig(
      source="text", train_files={str(tmp_path / 'e.txt')!r}, tokenizer=TokenizerConfig(path={spm_path!r}),
      seq_len=16))
""")
  assert cli.main(["data", "show", "--config", str(tmp_path / "cfg.py"), "--num", "50"]) == 2
  err = capsys.readouterr().err.strip()
  assert err == (f"error: {tmp_path / 'e.txt'}: line 6 is not UTF-8; fix or remove it, or set "
                 "data.skip_bad_lines=true to skip and count such records")


# ---------------------------------------------------------------- input that cannot work


def _corrupt_tfrecords(tmp_path, lines):
  _write_tfrecords(tmp_path / "good.tfrecord", lines[:20])
  _write_tfrecords(tmp_path / "mid.tfrecord", lines[20:60])
  data = bytearray((tmp_path / "mid.tfrecord").read_bytes())
  data[len(data) // 2:len(data) // 2 + 64] = bytes(range(64))  # garbage in the middle
  (tmp_path / "mid.tfrecord").write_bytes(bytes(data))
  _write_tfrecords(tmp_path / "cut.tfrecord", lines[60:80])
  (tmp_path / "cut.tfrecord").write_bytes((tmp_path / "cut.tfrecord").read_bytes()[:-37])  # truncated tail
  return len(data)


def test_corrupt_tfrecords_are_one_error_or_skipped_and_counted(make_cfg, spm_path, tok, lines, tmp_path, capfd):
  size = _corrupt_tfrecords(tmp_path, lines)
  make = dict(tokenizer_path=spm_path, batch_size=BATCH, shuffle=False, repeat=False)
  for name in ("mid", "cut"):
    msg = _first_error(pipeline.make_dataset(make_cfg(source="tfrecord"), files=str(tmp_path / f"{name}.tfrecord"),
                                             **make))
    assert msg.startswith(f"{tmp_path / f'{name}.tfrecord'}: corrupt or truncated TFRecord data at byte "), msg
    assert "skip_bad_lines=true" in msg
  assert f" of {size};" in _first_error(pipeline.make_dataset(make_cfg(source="tfrecord"),
                                                              files=str(tmp_path / "mid.tfrecord"), **make))
  ds = pipeline.make_dataset(make_cfg(source="tfrecord", skip_bad_lines=True), files=str(tmp_path / "*.tfrecord"),
                             **make)
  got = documents(take(ds), tok.eos_id, complete=False)
  assert not collections.Counter(got) - expected_documents(tok, lines[:80])  # real documents only
  assert expected_documents(tok, lines[:20]) <= collections.Counter(got)  # the intact file whole
  assert 20 < len(got) < 80
  err = capfd.readouterr().err
  assert "mid.tfrecord: corrupt or truncated TFRecord data at byte" in err and "skipped the rest of the file" in err
  assert "cut.tfrecord: corrupt or truncated" in err
  assert pipeline.skipped_lines()[f"data.eval_files {tmp_path / '*.tfrecord'}"] == 2


@pytest.mark.parametrize("kind", ["whitespace", "jsonl_without_field", "jsonl_field_not_string"])
def test_input_without_documents_fails_at_once_however_large(make_cfg, spm_path, tmp_path, kind):
  """Such input used to pass a 64 KiB probe and then repeat an empty epoch forever."""
  line = {"whitespace": " \t ", "jsonl_without_field": '{"body": "no text here"}',
          "jsonl_field_not_string": '{"text": 12}'}[kind]
  path = tmp_path / ("a.jsonl" if "jsonl" in kind else "a.txt")
  path.write_text((line + "\n") * 40_000)  # about 1 MB
  source = "jsonl" if "jsonl" in kind else "text"
  for skip in (False, True):
    t0 = time.time()
    with pytest.raises(DataError, match=r"contain no document"):
      pipeline.make_dataset(make_cfg(source=source, skip_bad_lines=skip), files=str(path), tokenizer_path=spm_path,
                            batch_size=BATCH)
    assert time.time() - t0 < 20


def test_a_host_whose_files_hold_no_document_fails_at_once(make_cfg, spm_path, lines, tmp_path):
  (tmp_path / "a.txt").write_text("\n".join(lines[:5]) + "\n")
  (tmp_path / "b.txt").write_text("\n\n   \n")
  kw = dict(files=str(tmp_path / "*.txt"), tokenizer_path=spm_path, batch_size=BATCH, process_count=2)
  pipeline.make_dataset(make_cfg(), process_index=0, **kw)  # host 0 reads a.txt
  with pytest.raises(DataError, match=r"contain no document: only whitespace \(host 1 of 2 reads 1 of the 2 files\)"):
    pipeline.make_dataset(make_cfg(), process_index=1, **kw)


def test_skip_log_names_every_power_of_two():
  counter = tf.Variable(0, dtype=tf.int64)
  docs = tf.constant(["x"] * 6)
  logged = []
  for n_bad in (1, 2, 2, 3, 1, 5, 6):  # totals 1, 3, 5, 8, 9, 14, 20
    before = int(counter.numpy())
    checks.check_block(docs, tf.range(6) < n_bad, locate=None, why="", counter=counter, name="n")
    total = int(counter.numpy())
    logged += [p for p in (1, 2, 4, 8, 16) if before < p <= total]
  assert int(counter.numpy()) == 20
  assert logged == [1, 2, 4, 8, 16]
  for x, p in ((1, 1), (2, 2), (3, 2), (4, 4), (5, 4), (1023, 512), (1024, 1024), (2**40 + 5, 2**40)):
    assert int(checks._highest_bit(tf.constant(x, tf.int64))) == p


def test_files_a_line_reader_would_misread_are_refused(make_cfg, spm_path, lines, tmp_path):
  """A compressed file reads as lines of junk (with skip_bad_lines, some of it as documents),
  and one whose lines end in CR alone as one document: each is refused before the graph,
  naming the file and the fix. A directory given as the input says it is one."""
  import bz2
  import gzip
  import lzma

  text = ("\n".join(lines[:50]) + "\n").encode()
  kw = dict(tokenizer_path=spm_path, batch_size=BATCH)
  for name, data in [("a.txt.gz", gzip.compress(text)), ("a.txt.bz2", bz2.compress(text)),
                     ("a.jsonl.xz", lzma.compress(text))]:
    (tmp_path / name).write_bytes(data)
    source = "jsonl" if ".jsonl" in name else "text"
    for skip in (False, True):
      with pytest.raises(DataError, match=rf"{name} is compressed .*decompress it first"):
        pipeline.make_dataset(make_cfg(source=source, skip_bad_lines=skip), files=str(tmp_path / name), **kw)
  (tmp_path / "mac.txt").write_bytes(text.replace(b"\n", b"\r"))
  with pytest.raises(DataError, match=r"mac.txt: its lines end in a carriage return alone"):
    pipeline.make_dataset(make_cfg(), files=str(tmp_path / "mac.txt"), **kw)
  (tmp_path / "dos.txt").write_bytes(text.replace(b"\n", b"\r\n"))  # CRLF reads as lines
  pipeline.make_dataset(make_cfg(), files=str(tmp_path / "dos.txt"), **kw)
  # A first line longer than the 64 KiB looked at, with stray CRs in it (a progress bar's log): read as it is.
  (tmp_path / "log.txt").write_bytes(b"x" * 100 + b"\r" + b"y" * 100 + b"\r" + b"z" * 70_000 + b"\n" + text)
  pipeline.make_dataset(make_cfg(), files=str(tmp_path / "log.txt"), **kw)
  # A compressed file among plain ones, in evaluation too (which reads no sample of each file).
  (tmp_path / "mixed").mkdir()
  (tmp_path / "mixed" / "a.txt").write_bytes(text)
  (tmp_path / "mixed" / "b.txt").write_bytes(gzip.compress(text))
  with pytest.raises(DataError, match=r"mixed/b.txt is compressed"):
    pipeline.make_dataset(make_cfg(), files=str(tmp_path / "mixed" / "*.txt"), tokenizer_path=spm_path,
                          batch_size=BATCH, shuffle=False, repeat=False)
  (tmp_path / "folder").mkdir()
  with pytest.raises(DataError, match=r"folder' \(set by data.train_files\) is a directory; name its files with a glob, e.g. '.*folder/\*.txt'"):
    pipeline.make_dataset(make_cfg(), files=str(tmp_path / "folder"), **kw)


def test_hosts_given_whole_files_of_very_different_sizes_are_warned(make_cfg, spm_path, lines, tmp_path, capfd):
  """Two files, one a hundred times the other, on two hosts: host 1 would repeat its few
  documents a hundred times as often within the same steps. Start-up says so and names the
  fix; shares of similar size pass without a word."""
  (tmp_path / "big.txt").write_text("\n".join(lines * 10) + "\n")
  (tmp_path / "small.txt").write_text("\n".join(lines[: max(1, len(lines) // 10)]) + "\n")
  kw = dict(tokenizer_path=spm_path, batch_size=BATCH, process_count=2, process_index=0, shuffle=True, repeat=True)
  capfd.readouterr()
  pipeline.make_dataset(make_cfg(), files=str(tmp_path / "*.txt"), **kw)
  out = capfd.readouterr().out
  assert "the 2 files of data.train_files" in out and "go to the 2 hosts whole" in out, out
  assert "(host 1)" in out and "--config.data.host_split=rows" in out
  (tmp_path / "even").mkdir()
  for name in ("a.txt", "b.txt"):
    (tmp_path / "even" / name).write_text("\n".join(lines) + "\n")
  pipeline.make_dataset(make_cfg(), files=str(tmp_path / "even" / "*.txt"), **kw)
  assert "go to the 2 hosts whole" not in capfd.readouterr().out
