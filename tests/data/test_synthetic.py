"""The synthetic corpus: determinism, idempotent atomic writes, separate streams, and
content that is what it claims to be (checked by parsing it with plain Python)."""

import glob
import json
import os
import re

import pytest

from t5x_like.data import synthetic

ARITH = re.compile(r"^(\d+) ([+-]) (\d+) = (-?\d+)$")


def _read(pattern):
  out = {}
  for path in sorted(glob.glob(pattern)):
    with open(path, "rb") as f:
      out[os.path.basename(path)] = f.read()
  return out


def _docs(pattern):
  return [line for data in _read(pattern).values() for line in data.decode().split("\n") if line]


def _sentences(doc):
  """Splits a document at its " ." sentence ends."""
  parts = doc.split(" .")
  assert parts[-1] == "", f"document does not end with ' .': {doc!r}"
  return [p.strip() for p in parts[:-1]]


def test_same_seed_same_files_other_seed_differs(tmp_path):
  a = synthetic.write_corpus(str(tmp_path / "a"), num_train_docs=300, num_eval_docs=50, seed=3)
  b = synthetic.write_corpus(str(tmp_path / "b"), num_train_docs=300, num_eval_docs=50, seed=3)
  c = synthetic.write_corpus(str(tmp_path / "c"), num_train_docs=300, num_eval_docs=50, seed=4)
  assert a["train"] == str(tmp_path / "a" / "train-*.txt")
  for split in ("train", "eval"):
    assert _read(a[split]) == _read(b[split])
    assert _read(a[split]).keys() == _read(c[split]).keys()
    assert _read(a[split]) != _read(c[split])
  assert len(_read(a["train"])) == 4 and len(_docs(a["train"])) == 300
  assert len(_docs(a["eval"])) == 50


def test_second_call_does_not_rewrite_and_new_params_do(tmp_path):
  out = str(tmp_path / "corpus")
  globs = synthetic.write_corpus(out, num_train_docs=200, num_eval_docs=20)
  files = sorted(glob.glob(globs["train"]) + glob.glob(globs["eval"]))
  mtimes = {f: os.stat(f).st_mtime_ns for f in files}
  with open(os.path.join(out, "_COMPLETE.json")) as f:
    assert json.load(f)["params"]["num_train_docs"] == 200
  assert synthetic.write_corpus(out, num_train_docs=200, num_eval_docs=20) == globs
  assert {f: os.stat(f).st_mtime_ns for f in files} == mtimes
  assert not glob.glob(os.path.join(out, "*.tmp*"))

  # Other parameters rebuild, and shards of the old layout leave the glob.
  synthetic.write_corpus(out, num_train_docs=200, num_eval_docs=20, num_train_shards=2)
  assert [os.path.basename(p) for p in sorted(glob.glob(globs["train"]))] == [
      "train-00000-of-00002.txt", "train-00001-of-00002.txt"]
  assert len(_docs(globs["train"])) == 200


def test_missing_file_or_marker_rebuilds(tmp_path):
  out = str(tmp_path / "corpus")
  globs = synthetic.write_corpus(out, num_train_docs=100, num_eval_docs=10)
  before = _read(globs["train"])
  os.remove(sorted(glob.glob(globs["train"]))[1])  # e.g. a crash or a careless rm
  synthetic.write_corpus(out, num_train_docs=100, num_eval_docs=10)
  assert _read(globs["train"]) == before
  os.remove(os.path.join(out, "_COMPLETE.json"))
  synthetic.write_corpus(out, num_train_docs=100, num_eval_docs=10)
  assert _read(globs["train"]) == before and os.path.exists(os.path.join(out, "_COMPLETE.json"))


def test_train_and_eval_streams_are_separate(tmp_path):
  small = synthetic.write_corpus(str(tmp_path / "s"), num_train_docs=400, num_eval_docs=100)
  big_eval = synthetic.write_corpus(str(tmp_path / "b"), num_train_docs=400, num_eval_docs=300)
  train, evals = _docs(small["train"]), _docs(small["eval"])
  # More eval documents do not change the training documents; the eval prefix is stable.
  assert _docs(big_eval["train"]) == train
  assert _docs(big_eval["eval"])[:100] == evals
  # Eval is not a copy or a shifted copy of train: only short documents coincide by chance.
  overlap = set(train) & set(evals)
  assert len(overlap) <= 5, overlap
  assert evals[:20] != train[:20] and evals[0] not in train


def test_documents_have_the_promised_structure(tmp_path):
  globs = synthetic.write_corpus(str(tmp_path / "c"), num_train_docs=2000, num_eval_docs=10)
  docs = _docs(globs["train"])
  kinds = {"arithmetic": 0, "count": 0, "template": 0}
  lengths = []
  for doc in docs:
    assert re.fullmatch(r"[a-z0-9 +\-=:.]+", doc), doc  # lowercase ASCII, no newline
    lengths.append(len(doc.split()))
    for s in _sentences(doc):
      m = ARITH.match(s)
      if m:
        a, op, b, result = m.groups()
        assert 0 <= int(a) <= synthetic.MAX_OPERAND and 0 <= int(b) <= synthetic.MAX_OPERAND
        assert int(result) == (int(a) + int(b) if op == "+" else int(a) - int(b)), s
        kinds["arithmetic"] += 1
      elif s.startswith("count : "):
        run = [int(w) for w in s[len("count : "):].split()]
        assert len(run) >= 3 and run == list(range(run[0], run[0] + len(run))), s
        kinds["count"] += 1
      else:
        words = s.split()
        assert words[0] == "the" and " a " in s and 6 <= len(words) <= 12, s
        kinds["template"] += 1
  assert min(kinds.values()) > 500, kinds
  assert any(int(m.group(4)) < 0 for d in docs for s in _sentences(d) if (m := ARITH.match(s)))
  assert min(lengths) >= 5 and max(lengths) <= 60
  assert sum(n <= 15 for n in lengths) > 100 and sum(n >= 45 for n in lengths) > 100


def test_skill_examples_are_correct_and_deterministic():
  items = synthetic.skill_examples(500, seed=1)
  assert len(items) == 500 and items == synthetic.skill_examples(500, seed=1)
  assert items != synthetic.skill_examples(500, seed=2)
  assert synthetic.skill_examples(10, seed=1) == items[:10]
  ops = set()
  for prompt, answer in items:
    m = re.fullmatch(r"(\d+) ([+-]) (\d+) =", prompt)
    assert m, prompt
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    assert answer == str(a + b if op == "+" else a - b)
    assert ARITH.match(f"{prompt} {answer}")  # the same format as in the documents
    ops.add(op)
  assert ops == {"+", "-"}
  assert any(a.startswith("-") for _, a in items)


@pytest.mark.parametrize("predicted, answer, ok", [
    ("42 .", "42", True), (" 42", "42", True), ("42", " 42 ", True), ("-8 . count", "-8", True),
    ("4 2 .", "42", False), ("42.", "42", False), ("", "42", False), ("8", "-8", False),
    ("43 . 42", "42", False)])
def test_score_answer(predicted, answer, ok):
  assert synthetic.score_answer(predicted, answer) is ok
