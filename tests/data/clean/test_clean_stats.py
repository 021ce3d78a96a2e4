"""`data stats`: counts, duplicates, sources, tokens and the PNG."""

import json

from clean_corpus import CLEAN

from t5x_like.cli import main
from t5x_like.data.clean.stats import corpus_stats


def test_stats_count_what_the_files_hold(tmp_path, spm_path, capsys):
  p = tmp_path / "x.jsonl"
  rows = [{"text": CLEAN, "url": "https://news.example.com/a", "source": "web"},
          {"text": CLEAN, "url": "https://News.example.com/b", "source": "web"},
          {"text": "one two three", "url": "http://blog.example.org/", "source": "books"},
          {"other": "no text"}]
  # Plus a lone surrogate escape (it crashed the duplicate hash): an unreadable record.
  p.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"text": "half \\ud83d a pair"}\n')
  s = corpus_stats([str(p)], tokenizer=spm_path, plot=str(tmp_path / "len.png"))
  assert s["documents"] == 3 and s["unreadable_records"] == 2
  assert s["characters"] == 2 * len(CLEAN) + 13
  assert s["words"] == 2 * len(CLEAN.split()) + 3
  assert s["tokens"] > s["words"] // 2
  assert abs(s["duplicate_rate"] - 1 / 3) < 1e-9
  assert s["top_domains"][0] == ("news.example.com", 2) and dict(s["top_sources"]) == {"web": 2, "books": 1}
  assert sum(c for _, _, c in s["chars_histogram"]) == 3
  assert (tmp_path / "len.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert main(["data", "stats", "--input", str(p), "--json", str(tmp_path / "s.json")]) == 0
  out = capsys.readouterr().out
  assert "documents        3" in out and "news.example.com 2" in out
  assert json.load(open(tmp_path / "s.json"))["documents"] == 3


def test_files_skipped_whole_are_named(tmp_path, capsys):
  (tmp_path / "a.txt").write_text("one document\n")
  (tmp_path / "b.bin").write_bytes(b"\x00\x01\x02 not text\n")
  s = corpus_stats([str(tmp_path / "a.txt"), str(tmp_path / "b.bin")])
  assert s["documents"] == 1 and s["skipped_files"] == [f"{tmp_path / 'b.bin'} (binary)"]
  assert main(["data", "stats", "--input", str(tmp_path / "b.bin")]) == 0
  assert f"skipped files    1: {tmp_path / 'b.bin'} (binary)" in capsys.readouterr().out
