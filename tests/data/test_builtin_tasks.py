"""The built-in fine-tuning tasks (data/builtin_tasks.py): well-formed examples, balanced
labels, tags that match the words, and held-out errors made of words never misplaced in
training."""

import json
import random
import re

from t5x_like.data import builtin_tasks as B
from t5x_like.data import synthetic


def _read(path):
  return [json.loads(line) for line in open(path)]


def test_every_task_writes_its_fields_once_and_keeps_them(tmp_path):
  fields = {"grammar_check": {"text", "label"}, "grammar_pair": {"text", "text_pair", "label"}, "grammar_tags": {"tokens", "tags"}, "arith_check": {"text", "label"},
            "arith_pair": {"text", "text_pair", "label"}, "error_tags": {"tokens", "tags"},
            "arith_qa": {"input", "target", "prompt", "completion"},
            "grammar_qa": {"input", "target", "prompt", "completion"},
            "count_qa": {"input", "target", "prompt", "completion"},
            "word_category": {"input", "target", "prompt", "completion"}, "paraphrase": {"text", "text_pair"}}
  assert set(fields) == set(B.TASKS)
  for task, want in fields.items():
    paths = B.write_task(str(tmp_path), task, num_train=50, num_eval=10)
    rows = _read(paths["train"])
    assert len(rows) == 50 and len(_read(paths["eval"])) == 10
    assert all(set(r) == want for r in rows)
    mtime = (tmp_path / f"task-{task}-train.jsonl").stat().st_mtime_ns
    B.write_task(str(tmp_path), task, num_train=50, num_eval=10)  # the same parameters: kept as is
    assert (tmp_path / f"task-{task}-train.jsonl").stat().st_mtime_ns == mtime
    assert rows != _read(paths["eval"])[:10]


def test_a_changed_task_rewrites_its_files(tmp_path, monkeypatch):
  paths = B.write_task(str(tmp_path), "word_category", num_train=20, num_eval=5)
  old = B.TASKS["word_category"]
  monkeypatch.setitem(B.TASKS, "word_category", lambda rng, split: {**old(rng, split), "target": "thing"})
  B.write_task(str(tmp_path), "word_category", num_train=20, num_eval=5)  # same parameters, new generator
  assert all(r["target"] == "thing" for r in _read(paths["train"]) + _read(paths["eval"]))


def test_count_qa_hides_the_first_number_only_in_eval():
  for split in ("train", "eval"):
    rng = random.Random(split)
    for _ in range(500):
      ex = B.count_qa(rng, split)
      words = ex["prompt"].split()
      assert words[:2] == ["count", ":"] and words[-1] == "." and words.count("_") == 1
      run = words[2:-1]
      k = run.index("_")
      assert (k == 0) == (split == "eval")
      # seq2seq: the same question in T5's span layout, the answer behind sentinel 0
      assert ex["input"].split() == [*words[:2 + k], "<extra_id_0>", *words[3 + k:]]
      assert ex["target"] == f"<extra_id_0> {ex['completion']} <extra_id_1>"
      run[k] = ex["completion"]
      assert [int(w) for w in run] == list(range(int(run[0]), int(run[0]) + len(run)))


def test_word_category_holds_out_words_never_in_training():
  words, names = {"train": set(), "eval": set()}, {"noun": synthetic._NOUN, "adjective": synthetic._ADJ,
                                                   "verb": synthetic._VERB}
  for split in words:
    rng = random.Random(split)
    for _ in range(1000):
      ex = B.word_category(rng, split)
      prefix, word = ex["input"].split(" : ")
      assert prefix == "category" and word in names[ex["target"]] and ex["completion"] == ex["target"]
      words[split].add(word)
  assert not words["train"] & words["eval"]
  assert words["train"] | words["eval"] == {w for ws in names.values() for w in ws}


def test_grammar_errors_use_disjoint_words_in_train_and_eval():
  misplaced = {"train": set(), "eval": set()}
  labels = []
  for split in misplaced:
    rng = random.Random(split)
    for _ in range(2000):
      ex = B.grammar_tags(rng, split)
      assert len(ex["tokens"]) == len(ex["tags"])
      misplaced[split] |= {w for w, t in zip(ex["tokens"], ex["tags"], strict=True) if t == "B-ERR"}
      labels.append(B.grammar_check(rng, split)["label"])
  assert misplaced["train"] and misplaced["eval"] and not misplaced["train"] & misplaced["eval"]
  assert abs(labels.count("wrong") / len(labels) - 0.5) < 0.03


def _well_formed(clause: str) -> bool:
  adj, noun = "|".join(synthetic._ADJ), "|".join(synthetic._NOUN)
  verb, place = "|".join(B._PASSIVE), "|".join(synthetic._PLACE)
  pattern = rf"the ({adj})( ({adj}))? ({noun}) ({verb}) a ({adj}) ({noun})( ({place}))? \."
  return re.fullmatch(pattern, clause) is not None


def test_grammar_pairs_are_wrong_exactly_when_a_clause_is_malformed():
  rng = random.Random(0)
  labels = []
  for _ in range(1000):
    ex = B.grammar_pair(rng, "eval")
    both = _well_formed(ex["text"]) and _well_formed(ex["text_pair"])
    assert both == (ex["label"] == "correct"), ex
    labels.append(ex["label"])
  assert abs(labels.count("wrong") / len(labels) - 0.5) < 0.05


def test_arithmetic_labels_follow_the_sums():
  rng = random.Random(0)
  for _ in range(500):
    ex = B.arith_check(rng)
    a, op, b, _, shown, _ = ex["text"].split()
    true = int(a) + int(b) if op == "+" else int(a) - int(b)
    assert (int(shown) == true) == (ex["label"] == "correct")
    qa = B.arith_qa(rng)
    _, _, a, op, b, _ = qa["input"].split()
    assert int(qa["target"]) == (int(a) + int(b) if op == "+" else int(a) - int(b))
    assert max(int(a), int(b)) <= synthetic.MAX_OPERAND


def test_arithmetic_eval_problems_never_appear_in_the_train_split(tmp_path):
  def problems(rows):
    out = set()
    for r in rows:
      text = r.get("text") or r.get("input") or " ".join(r.get("tokens", []))
      words = text.replace("compute :", "").split()
      for i, w in enumerate(words):
        if w in "+-" and 0 < i < len(words) - 1:
          out.add(f"{words[i - 1]} {w} {words[i + 1]} =")
    return out

  for task in ("arith_check", "arith_pair", "error_tags", "arith_qa"):
    paths = B.write_task(str(tmp_path), task, num_train=1500, num_eval=300)
    train, held = problems(_read(paths["train"])), problems(_read(paths["eval"]))
    assert held and all(B.held_out(p) for p in held), task
    assert not train & held and not any(B.held_out(p) for p in train), task
  all_problems = {f"{a} {op} {b} =" for a in range(20) for b in range(20) for op in "+-"}
  assert 0.18 < sum(map(B.held_out, all_problems)) / len(all_problems) < 0.32  # about a quarter
