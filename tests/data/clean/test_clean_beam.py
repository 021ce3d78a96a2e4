"""The Beam engine (DirectRunner) writes the same bytes as the process pool."""

import json
import os

import pytest
from clean_corpus import CLEAN, planted_corpus

from t5x_like.data.clean.options import CleanOptions
from t5x_like.data.clean.run import clean

try:
  import apache_beam  # noqa: F401
  HAVE_BEAM = True
except ImportError:
  HAVE_BEAM = False


@pytest.mark.skipif(not HAVE_BEAM, reason="apache_beam is not importable: pip install -e '.[beam]' to run")
def test_beam_direct_runner_matches_the_process_pool(tmp_path):
  docs, _, _ = planted_corpus(120, 40, seed=11)
  d = tmp_path / "in"
  d.mkdir()
  (d / "a.txt").write_text("\n".join(docs[:80]) + "\n" + CLEAN + "\nshort\n")
  (d / "b.txt").write_bytes(("\n".join(docs[80:]) + "\n" + CLEAN + "\n").encode() + b"\xff bad\n")
  (d / "c.bin").write_bytes(b"\x00" * 100)
  (d / "d.jsonl").write_text(json.dumps({"text": f"<p>{CLEAN}</p>", "url": "http://x.example"}) + "\n")
  opts = CleanOptions(fmt="text", shard_docs=50)
  local = clean([str(d / "*")], str(tmp_path / "local"), opts, workers=2)
  beam = clean([str(d / "*")], str(tmp_path / "beam"), opts, runner="DirectRunner",
               pipeline_args=["--direct_num_workers=1"])
  names = sorted(os.listdir(tmp_path / "local"))
  assert names == sorted(os.listdir(tmp_path / "beam")) and len(names) > 3
  for name in names:
    if name != "report.json":
      assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "beam" / name).read_bytes(), name
  for key in ("input_docs", "input_chars", "kept_docs", "kept_chars", "stages", "skipped_files", "shards"):
    assert local[key] == beam[key], key
  assert local["stages"]["near_dup"]["docs_removed"] >= 36 and local["stages"]["exact_dup"]["docs_removed"] == 1
