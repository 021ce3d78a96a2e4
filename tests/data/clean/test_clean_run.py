"""`data clean` end to end: accounting, bad input, output shards, the CLI."""

import json
import os

import pytest
from clean_corpus import CLEAN, planted_corpus

from t5x_like.cli import main
from t5x_like.data.clean.options import CleanOptions
from t5x_like.data.clean.run import clean
from t5x_like.errors import DataError


def _accounted(rep):
  """Every input document is kept or removed by exactly one stage; characters too."""
  removed = sum(s["docs_removed"] for s in rep["stages"].values())
  assert rep["kept_docs"] + removed == rep["input_docs"]
  assert rep["kept_chars"] + sum(s["chars_removed"] for s in rep["stages"].values()) == rep["input_chars"]


def _lines(out):
  return [json.loads(x) for name in sorted(os.listdir(out)) if name.endswith(".jsonl")
          for x in open(os.path.join(out, name))]


def test_bad_input_is_counted_and_skipped(tmp_path):
  d = tmp_path / "in"
  d.mkdir()
  (d / "a.txt").write_text(CLEAN + "\n\n" + "short\n")
  (d / "b.bin").write_bytes(bytes(range(256)) * 40)           # binary: NUL bytes
  (d / "c.txt").write_bytes(b"")                               # empty
  (d / "d.txt").write_bytes(b"caf\xe9 \xff\xfe " + CLEAN.encode() + b"\n")  # Latin-1, not UTF-8
  (d / "e.txt").write_bytes(b"x" * (50 << 20) + b"\n")         # one 50 MB line
  (d / "f.jsonl").write_text('{"text": "' + CLEAN + '", "url": "http://a.example/1"}\nnot json\n{"other": 1}\n')
  rep = clean([str(d / "*")], str(tmp_path / "out"), CleanOptions(fmt="text"))
  _accounted(rep)
  assert {f["why"] for f in rep["skipped_files"]} == {"binary", "empty"}
  stages = {k: v["docs_removed"] for k, v in rep["stages"].items()}
  # f.jsonl read as text: its 3 lines are text documents here.
  assert stages["encoding"] == 1 and stages["too_long"] == 1 and stages["min_words"] >= 3
  assert rep["input_docs"] == 2 + 1 + 1 + 3 and rep["kept_docs"] == 1
  assert rep["stages"]["too_long"]["chars_removed"] == 50 << 20
  assert _lines(tmp_path / "out") == [{"text": CLEAN}]
  report = json.load(open(tmp_path / "out" / "report.json"))
  assert report["kept_docs"] == 1


def test_jsonl_keeps_other_fields_and_counts_unreadable_lines(tmp_path):
  p = tmp_path / "x.jsonl"
  html = f"<div><p>{CLEAN}</p><script>x()</script><p>https://a.example/x a@b.example</p></div>"
  p.write_text(json.dumps({"url": "http://a.example/1", "text": html}) + "\n" + "not json\n" +
               json.dumps({"body": CLEAN}) + "\n" + json.dumps({"text": CLEAN, "source": "s"}) + "\n")
  rep = clean([str(p)], str(tmp_path / "out"), CleanOptions())
  _accounted(rep)
  assert rep["stages"]["unreadable"]["docs_removed"] == 2
  assert rep["stages"]["exact_dup"]["docs_removed"] == 1  # without the markup, the two are one text
  assert rep["stages"]["markup"]["chars_removed"] > 0
  assert _lines(tmp_path / "out") == [{"url": "http://a.example/1", "text": CLEAN}]


def test_output_is_the_same_for_one_and_two_workers_and_planted_copies_go(tmp_path):
  docs, distinct, copies = planted_corpus(150, 50, seed=7)
  p = tmp_path / "x.txt"
  p.write_text("\n".join(docs) + "\n")
  opts = CleanOptions(shard_docs=64)
  reps = [clean([str(p)], str(tmp_path / f"out{w}"), opts, workers=w) for w in (1, 2)]
  for rep in reps:
    _accounted(rep)
  a, b = (sorted(os.listdir(tmp_path / f"out{w}")) for w in (1, 2))
  # Shards of <= 64 input positions: 0-63, 64-127, 128-191 (and 192-199, only copies, all gone).
  assert a == b and len(a) == 4
  for name in a[:-1]:
    assert (tmp_path / "out1" / name).read_bytes() == (tmp_path / "out2" / name).read_bytes()
  removed = reps[0]["stages"]["near_dup"]["docs_removed"]
  assert 0.9 * len(copies) <= removed <= len(copies) + 0.01 * len(distinct)


def test_tfrecord_output_and_pii(tmp_path):
  p = tmp_path / "x.txt"
  p.write_text(CLEAN + " Call 020 7946 0958 or write to bob@example.com.\n")
  clean([str(p)], str(tmp_path / "out"), CleanOptions(pii=True, tfrecord=True))
  (line,) = _lines(tmp_path / "out")
  assert line["text"].endswith("Call <PHONE> or write to <EMAIL>.")
  import tensorflow as tf
  (record,) = list(tf.data.TFRecordDataset(str(tmp_path / "out" / "clean-00000-00000.tfrecord")))
  example = tf.train.Example.FromString(record.numpy())
  assert example.features.feature["text"].bytes_list.value[0].decode() == line["text"]


def test_errors_are_one_line(tmp_path, capsys):
  assert main(["data", "clean", "--input", str(tmp_path / "none*.txt"), "--output", str(tmp_path / "o")]) == 2
  assert "matches no file" in capsys.readouterr().err
  (tmp_path / "o").mkdir()
  (tmp_path / "a.txt").write_text(CLEAN + "\n")
  assert main(["data", "clean", "--input", str(tmp_path / "a.txt"), "--output", str(tmp_path / "o")]) == 2
  assert "already exists" in capsys.readouterr().err
  assert main(["data", "clean", "--input", str(tmp_path / "a.txt"), "--output", str(tmp_path / "p"),
               "--set", "min_wrds=3"]) == 2
  assert "did you mean min_words" in capsys.readouterr().err
  assert main(["data", "clean", "--input", str(tmp_path / "a.txt"), "--output", str(tmp_path / "p"),
               "--project=x"]) == 2
  assert "runner flags need --runner" in capsys.readouterr().err
  assert not os.path.exists(tmp_path / "p")


def test_cli_prints_the_table(tmp_path, capsys):
  (tmp_path / "a.txt").write_text(CLEAN + "\n" + CLEAN + "\nhi\n")
  assert main(["data", "clean", "--input", str(tmp_path / "a.txt"), "--output", str(tmp_path / "o"),
               "--no-near-dedup", "--set", "min_words=1"]) == 0
  out = capsys.readouterr().out
  assert "exact_dup" in out and "kept" in out and "wrote 1 shards" in out
  with pytest.raises(DataError):
    clean([str(tmp_path / "a.txt")], str(tmp_path / "o"), CleanOptions())


def test_tfds_input(tmp_path):
  from t5x_like.data.build import build_tfds
  (tmp_path / "a.txt").write_text(CLEAN + "\nshort\n" + CLEAN + "\n")
  build_tfds(str(tmp_path / "a.txt"), "clean_input_test", str(tmp_path / "tfds"), validation_fraction=0)
  rep = clean(["clean_input_test:1.0.0"], str(tmp_path / "out"), CleanOptions(fmt="tfds"),
              data_dir=str(tmp_path / "tfds"), split="train", workers=1)
  _accounted(rep)
  assert rep["input_docs"] == 3 and rep["kept_docs"] == 1
  assert _lines(tmp_path / "out") == [{"text": CLEAN}]


def test_paragraph_documents(tmp_path):
  second = CLEAN.replace("Tuesday", "Friday").replace("library", "museum").replace("librarians", "guides")
  (tmp_path / "a.txt").write_text(f"{CLEAN[:150]}\n{CLEAN[150:]}\n\n\n{second}\n  \nshort\n")
  rep = clean([str(tmp_path / "a.txt")], str(tmp_path / "out"),
              CleanOptions(text_docs="paragraph", near_dedup=False), workers=1)
  _accounted(rep)
  assert rep["input_docs"] == 3 and rep["kept_docs"] == 2
  assert [r["text"] for r in _lines(tmp_path / "out")] == [f"{CLEAN[:150]}\n{CLEAN[150:]}", second]


def test_unusual_files_read_as_their_writers_meant(tmp_path):
  """A JSONL line with a lone surrogate escape is counted under encoding (it used to crash
  the writer), one with a proper pair is kept; a byte order mark does not spoil line 1; a
  file whose first 8 KiB are blank lines is read on; UTF-16 is named; CR-only line ends
  split documents; JSONL mixed with text under --format auto is refused."""
  d = tmp_path / "in"
  d.mkdir()
  (d / "a.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps({"text": CLEAN + " one"}).encode() + b"\n" +
                              b'{"text": "' + CLEAN.encode() + b' two \\ud83d here"}\n' +
                              b'{"text": "' + CLEAN.encode() + b' three \\ud83d\\ude00", "tag": "\\udc00"}\n' +
                              b'{"text": "' + CLEAN.encode() + b' four \\ud83d\\ude00"}\n')
  plain = CleanOptions(near_dedup=False)  # the test's documents differ in a word or two
  rep = clean([str(d / "a.jsonl")], str(tmp_path / "out"), plain)
  _accounted(rep)
  assert rep["stages"]["encoding"]["docs_removed"] == 2 and "unreadable" not in rep["stages"]
  assert [x["text"] for x in _lines(tmp_path / "out")] == [CLEAN + " one", CLEAN + " four \U0001F600"]
  (d / "b.txt").write_bytes(b"\n" * 9000 + CLEAN.encode() + b"\n")
  (d / "c.txt").write_bytes("\ufeff".encode("utf-16-le").join([b"", (CLEAN + "\n").encode("utf-16-le")]))
  (d / "d.txt").write_bytes((CLEAN + " x\r" + CLEAN + " y\r").encode())
  rep = clean([str(d / "*.txt")], str(tmp_path / "out2"), plain)
  _accounted(rep)
  assert [(os.path.basename(f["path"]), f["why"][:6]) for f in rep["skipped_files"]] == [("c.txt", "UTF-16")]
  assert [x["text"] for x in _lines(tmp_path / "out2")] == [CLEAN, CLEAN + " x", CLEAN + " y"]
  with pytest.raises(DataError, match=r"--input mixes JSONL files \(.*a.jsonl\) with other files \(.*b.txt"):
    clean([str(d / "*")], str(tmp_path / "out3"), CleanOptions())


def test_a_saved_page_is_one_document_with_text_docs_file(tmp_path):
  """A saved HTML page whose script and style span lines: per line, their bodies would be
  documents of their own; with --text-docs file the page is one document, its text kept."""
  (tmp_path / "page.html").write_text(
      "<!doctype html>\n<html><head><title>T</title>\n<script>\nfunction f() {\n  return 1 < 2 && 3 > 2;\n}\n"
      "</script>\n<style>\np { color: red; }\n</style>\n</head>\n<body>\n<p>" + CLEAN + "</p>\n</body></html>\n")
  rep = clean([str(tmp_path / "page.html")], str(tmp_path / "out"), CleanOptions(text_docs="file"))
  _accounted(rep)
  assert rep["input_docs"] == 1 and [x["text"] for x in _lines(tmp_path / "out")] == [CLEAN]


def test_a_second_clean_to_the_same_output_stops_and_deletes_nothing(tmp_path):
  """While one clean fills OUT.incomplete (its lock held here), another to the same output
  stops with one line and leaves the first one's files; once the first is done, a clean
  runs. A glob mixing JSONL and text is refused by data build as by clean."""
  from t5x_like.data.build import build_tfds
  from t5x_like.errors import UserError
  from t5x_like.workdir import writing_output

  (tmp_path / "a.txt").write_text(CLEAN + "\n")
  work = tmp_path / "out.incomplete"
  with writing_output(str(work), "t5x-like data clean"):
    work.mkdir()
    (work / "clean-00000-00000.jsonl").write_text("the first run's shard\n")
    with pytest.raises(UserError, match=r"another `t5x-like data clean` is writing .*out\.incomplete now"):
      clean([str(tmp_path / "a.txt")], str(tmp_path / "out"), CleanOptions())
    assert (work / "clean-00000-00000.jsonl").read_text() == "the first run's shard\n"
  rep = clean([str(tmp_path / "a.txt")], str(tmp_path / "out"), CleanOptions())
  assert rep["kept_docs"] == 1 and not os.path.exists(tmp_path / "out.incomplete.lock")
  os.symlink(tmp_path / "nowhere", tmp_path / "dangling")  # the final rename would fail on it, after the work
  with pytest.raises(DataError, match="dangling already exists"):
    clean([str(tmp_path / "a.txt")], str(tmp_path / "dangling"), CleanOptions())
  (tmp_path / "b.jsonl").write_text(json.dumps({"text": CLEAN}) + "\n")
  with pytest.raises(DataError, match="--input mixes JSONL files"):
    build_tfds(str(tmp_path / "*"), "t5x_like_mixed", str(tmp_path / "tfds"))
