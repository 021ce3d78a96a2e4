"""`t5x-like data build`: text/JSONL files become a TFDS dataset that tfds itself and our
tfds source load offline, with every document in exactly one split; bad input and
existing output give one-line errors and leave nothing half-written."""

import collections
import json
import os

import pytest
import tensorflow_datasets as tfds

from t5x_like import cli
from t5x_like.data import pipeline
from t5x_like.data.build import build_tfds
from t5x_like.data.tokenizer import DataError


def _split_texts(data_dir, name, split, key="text"):
  ds = tfds.load(name, data_dir=data_dir, split=split, download=False)
  return [ex[key].decode() for ex in tfds.as_numpy(ds)]


def test_text_files_round_trip_through_tfds_and_our_source(tmp_path, make_cfg, spm_path, tok):
  docs_a = [f"count : {i} {i + 1} {i + 2} ." for i in range(40)] + ["caf\u00e9 \u4e2d\u6587 \U0001F600"]
  docs_b = [f"{i} + {i} = {2 * i} ." for i in range(29)]
  (tmp_path / "a.txt").write_text("\n".join(docs_a[:20] + ["", "   "] + docs_a[20:]) + "\n")
  (tmp_path / "b.txt").write_text("\n".join(docs_b) + "\n")  # 70 documents in all
  out = build_tfds(str(tmp_path / "*.txt"), "t5x_like_test_text", str(tmp_path / "tfds"),
                   validation_fraction=0.1)
  assert out["splits"] == {"train": 63, "validation": 7} and out["format"] == "text"
  train = _split_texts(str(tmp_path / "tfds"), "t5x_like_test_text", "train")
  val = _split_texts(str(tmp_path / "tfds"), "t5x_like_test_text", "validation")
  everything = docs_a + docs_b
  assert collections.Counter(train + val) == collections.Counter(everything)
  assert val == everything[9::10]  # spread evenly, in input order
  assert not [p for p in os.listdir(tmp_path / "tfds" / "t5x_like_test_text") if "incomplete" in p]
  # The same files through the pipeline (data.source=tfds, a fixed version).
  cfg = make_cfg(source="tfds", tfds_name="t5x_like_test_text:1.0.0", tfds_data_dir=str(tmp_path / "tfds"),
                 seq_len=16)
  ds = pipeline.make_dataset(cfg, files="", tokenizer_path=spm_path, batch_size=4, split="train",
                             shuffle=False, repeat=False)
  tokens = [t for b in ds.as_numpy_iterator()
            for row, seg in zip(b["decoder_target_tokens"], b["decoder_segment_ids"], strict=True)
            for t in row[seg > 0].tolist()]
  assert tokens == [t for d in train for t in tok.encode(d) + [tok.eos_id]]


def test_cli_builds_jsonl_with_a_named_field(tmp_path, capsys):
  records = [{"id": i, "body": f"doc {i} \"quoted\" \\ \u00e9"} for i in range(12)]
  (tmp_path / "x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  args = ["data", "build", "--input", str(tmp_path / "*.jsonl"), "--name", "t5x_like_test_json:2.0.0",
          "--data-dir", str(tmp_path / "tfds"), "--field", "body", "--validation-fraction", "0"]
  assert cli.main(args) == 0
  out = capsys.readouterr().out
  assert "(jsonl: train 12 documents)" in out and "--config.data.tfds.text_key=body" in out
  builder = tfds.builder_from_directory(str(tmp_path / "tfds" / "t5x_like_test_json" / "2.0.0"))
  assert list(builder.info.splits) == ["train"]
  got = [ex["body"].decode() for ex in tfds.as_numpy(builder.as_dataset(split="train"))]
  assert got == [r["body"] for r in records]
  # Building it again would overwrite: refused, in one line.
  assert cli.main(args) == 2
  assert "already exists; delete it, or build a new version" in capsys.readouterr().err


def test_bad_input_is_named_and_leaves_nothing_behind(tmp_path):
  out = str(tmp_path / "tfds")
  (tmp_path / "bad.txt").write_bytes(b"fine\nalso fine\n\xe9t\xe9 in latin-1\nlast\n")
  with pytest.raises(DataError, match=r"bad\.txt: line 3 is not UTF-8; .*--skip-bad-lines"):
    build_tfds(str(tmp_path / "bad.txt"), "t5x_like_bad", out, validation_fraction=0)
  assert not os.path.exists(os.path.join(out, "t5x_like_bad", "1.0.0"))
  summary = build_tfds(str(tmp_path / "bad.txt"), "t5x_like_bad", out, validation_fraction=0,
                       skip_bad_lines=True)
  assert summary["splits"] == {"train": 3} and summary["skipped_lines"] == 1
  (tmp_path / "c.jsonl").write_text('{"text": "a"}\n{"title": "b"}\n')
  with pytest.raises(DataError, match=r"c\.jsonl: line 2 is not a JSON object with a string field 'text'"):
    build_tfds(str(tmp_path / "c.jsonl"), "t5x_like_c", out)
  # A lone surrogate escape: named (it crashed the TFRecord writer); a byte order mark is not.
  (tmp_path / "s.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "a"}\n{"text": "b \\ud83d"}\n')
  with pytest.raises(DataError, match=r"s\.jsonl: line 2 is not valid JSON: a lone UTF-16 surrogate escape"):
    build_tfds(str(tmp_path / "s.jsonl"), "t5x_like_s", out)
  (tmp_path / "d.txt").write_text("one\ntwo\n")
  with pytest.raises(DataError, match=r"2 documents x --validation-fraction 0.05 holds out none"):
    build_tfds(str(tmp_path / "d.txt"), "t5x_like_d", out)
  with pytest.raises(DataError, match=r"'mnist' is a dataset of the TFDS catalog"):
    build_tfds(str(tmp_path / "d.txt"), "mnist", out)
  with pytest.raises(DataError, match=r"must be snake_case"):
    build_tfds(str(tmp_path / "d.txt"), "My-Data", out)
  with pytest.raises(DataError, match=r"no files match .*nothing\*.* \(set by --input\)"):
    build_tfds(str(tmp_path / "nothing*"), "t5x_like_e", out)
  assert not [p for _, dirs, _ in os.walk(out) for p in dirs if "incomplete" in p]
