"""Fine-tuning tasks built from the project's own corpus (`synthetic.py`), so the tests and
the tiny runs need no downloads. Each is written as JSON lines in the field layout users
give their own data (`data.task`), and read by the same code.

- arith_check (classification): "17 + 2 = 19 ." is `correct` or `wrong` (half are off by
  1-3).
- arith_pair (sentence-pair classification): text "17 + 2 =", text_pair "19"; same labels.
- error_tags (tagging): two to four clauses (equations, counting runs, templated
  sentences); the words of each wrong equation are tagged B-ERR I-ERR ..., the rest O.
  Span F1 scores the wrong equations found.
- arith_qa (seq2seq and completion): input/prompt "compute : 17 + 2 =", target/completion "19".
- grammar_qa (seq2seq and completion): input/prompt "intruder : " and a grammar_check
  sentence, target/completion the category of the misplaced word ("verb") or "none".
- count_qa (seq2seq and completion): a counting run of the corpus with one number hidden,
  prompt "count : 4 5 _ 7 8 ." and completion "6", or for seq2seq in T5's span layout
  input "count : 4 5 <extra_id_0> 7 8 ." and target "<extra_id_0> 6 <extra_id_1>"; the
  train split hides an inner or the last number, the eval split the first (the one number
  its left neighbour does not give). Span corruption teaches filling at every place.
- paraphrase (pairs): a templated sentence and its passive form ("the red fox sees a dog"
  / "a dog is seen by the red fox"); the other pairs of a batch are the negatives.
- grammar_check, grammar_tags: a templated sentence with a word put in a slot of another
  category ("the red fox greets a big sees ."), to classify or tag; the words misplaced in
  the eval split are never misplaced in the train split. grammar_pair: two such clauses as
  a sentence pair, wrong when either holds a misplaced word. Which word belongs to which
  category only the pretraining corpus teaches (MLM sees every word in its own slots), so
  these are the encoder's tasks that show what pretraining bought.

The arithmetic tasks hold out a quarter of the 800 problems (`held_out`): the eval split
asks only those, the train split never. The pretraining corpus has all of them, so the
held-out score measures what the pretrained model knew, which fine-tuning from scratch on
the train split cannot teach.
Train and eval examples come from separate random streams.
"""

from __future__ import annotations

import hashlib
import json
import os
import random

from t5x_like.data import synthetic

LABELS = {"grammar_check": ["wrong", "correct"], "grammar_pair": ["wrong", "correct"], "grammar_tags": ["O", "B-ERR", "I-ERR"],
          "arith_check": ["wrong", "correct"], "arith_pair": ["wrong", "correct"],
          "error_tags": ["O", "B-ERR", "I-ERR"]}
DEFAULT_TASK = {"classification": "grammar_check", "tagging": "grammar_tags", "seq2seq": "word_category",
                "completion": "arith_qa", "pairs": "paraphrase"}
_PASSIVE = {"sees": "seen", "likes": "liked", "follows": "followed", "helps": "helped", "finds": "found",
            "chases": "chased", "watches": "watched", "greets": "greeted"}


def held_out(prompt: str) -> bool:
  """Whether an arithmetic problem ("17 + 2 =") belongs to the eval split: a quarter of
  the 800, by a stable hash. The pretraining corpus holds all of them, the fine-tuning
  train split never these: what a model scores on them it knew before fine-tuning."""
  return hashlib.sha256(prompt.encode()).digest()[0] % 4 == 0


def _problem(rng: random.Random, split: str) -> tuple[str, str]:
  while True:
    prompt, answer = synthetic.arithmetic_problem(rng)
    if held_out(prompt) == (split == "eval"):
      return prompt, answer


def _equation(rng: random.Random, wrong: bool, split: str) -> tuple[str, str, str]:
  """(prompt "a + b =", shown answer, true answer)."""
  prompt, answer = _problem(rng, split)
  if not wrong:
    return prompt, answer, answer
  delta = rng.choice([-3, -2, -1, 1, 2, 3])
  return prompt, str(int(answer) + delta), answer


def arith_check(rng: random.Random, split: str = "train") -> dict:
  wrong = rng.random() < 0.5
  prompt, shown, _ = _equation(rng, wrong, split)
  return {"text": f"{prompt} {shown} .", "label": "wrong" if wrong else "correct"}


def arith_pair(rng: random.Random, split: str = "train") -> dict:
  wrong = rng.random() < 0.5
  prompt, shown, _ = _equation(rng, wrong, split)
  return {"text": prompt, "text_pair": shown, "label": "wrong" if wrong else "correct"}


def error_tags(rng: random.Random, split: str = "train") -> dict:
  words, tags = [], []
  for _ in range(rng.randint(2, 4)):
    kind = rng.random()
    if kind < 0.6:
      wrong = rng.random() < 0.4
      prompt, shown, _ = _equation(rng, wrong, split)
      clause = f"{prompt} {shown}".split()
      tags += (["B-ERR"] + ["I-ERR"] * (len(clause) - 1)) if wrong else ["O"] * len(clause)
      words += clause
      words.append(".")
      tags.append("O")
    else:
      clause = (synthetic._counting(rng) if kind < 0.8 else synthetic._templated(rng)).split()
      words += clause
      tags += ["O"] * len(clause)
  return {"tokens": words, "tags": tags}


_CATEGORIES = {"ADJ": synthetic._ADJ, "NOUN": synthetic._NOUN, "VERB": tuple(sorted(_PASSIVE))}


def _clause(rng: random.Random) -> list[tuple[str, str]]:
  """A templated clause as (word, category) pairs; "" for the fixed words."""
  adj, noun = lambda: (rng.choice(synthetic._ADJ), "ADJ"), lambda: (rng.choice(synthetic._NOUN), "NOUN")
  words = [("the", ""), adj()] + ([adj()] if rng.random() < 0.3 else []) + [noun()]
  words += [(rng.choice(_CATEGORIES["VERB"]), "VERB"), ("a", ""), adj(), noun()]
  if rng.random() < 0.5:
    words += [(w, "") for w in rng.choice(synthetic._PLACE).split()]
  return words + [(".", "")]


def _misplace(rng: random.Random, words: list, split: str) -> int:
  """Puts a word of another category into a random slot; returns the slot. The words
  inserted are the even-numbered of each category's list in the train split and the
  odd-numbered in the eval split: held-out errors use words never seen misplaced in
  training, which only a model that knows the categories (from pretraining) recognises."""
  slots = [i for i, (_, c) in enumerate(words) if c]
  i = rng.choice(slots)
  other = rng.choice([c for c in _CATEGORIES if c != words[i][1]])
  pool = _CATEGORIES[other][split == "eval"::2]
  words[i] = (rng.choice(pool), "ERR")
  return i


def grammar_check(rng: random.Random, split: str = "train") -> dict:
  words = _clause(rng)
  wrong = rng.random() < 0.5
  if wrong:
    _misplace(rng, words, split)
  return {"text": " ".join(w for w, _ in words), "label": "wrong" if wrong else "correct"}


def grammar_pair(rng: random.Random, split: str = "train") -> dict:
  """Two clauses as a sentence pair, `wrong` when one of them holds a misplaced word."""
  first, second = _clause(rng), _clause(rng)
  wrong = rng.random() < 0.5
  if wrong:
    _misplace(rng, first if rng.random() < 0.5 else second, split)
  return {"text": " ".join(w for w, _ in first), "text_pair": " ".join(w for w, _ in second),
          "label": "wrong" if wrong else "correct"}


def grammar_tags(rng: random.Random, split: str = "train") -> dict:
  words = [w for _ in range(rng.randint(2, 3)) for w in _clause(rng)]
  for _ in range(rng.choice([0, 1, 1, 2])):
    _misplace(rng, words, split)
  return {"tokens": [w for w, _ in words], "tags": ["B-ERR" if c == "ERR" else "O" for _, c in words]}


_CATEGORY_NAMES = {"ADJ": "adjective", "NOUN": "noun", "VERB": "verb"}


def grammar_qa(rng: random.Random, split: str = "train") -> dict:
  """A grammar_check sentence after "intruder :"; the target names the category of the
  misplaced word ("verb" for "the red fox greets a big sees ."), or "none"."""
  words = _clause(rng)
  answer = "none"
  if rng.random() < 0.5:
    word = words[_misplace(rng, words, split)][0]
    answer = next(_CATEGORY_NAMES[c] for c, pool in _CATEGORIES.items() if word in pool)
  question = "intruder : " + " ".join(w for w, _ in words)
  return {"input": question, "target": answer, "prompt": question, "completion": answer}


def word_category(rng: random.Random, split: str = "train") -> dict:
  """The category of one word of the corpus: input/prompt "category : fox", target/
  completion "noun". The train split asks the even-numbered words of each category's list,
  the eval split the odd-numbered: the held-out words never occur in the fine-tuning data,
  so only what pretraining put in their embeddings (the slots the corpus uses them in)
  tells their category."""
  category = rng.choice(sorted(_CATEGORIES))
  word = rng.choice(_CATEGORIES[category][split == "eval"::2])
  question = "category : " + word
  return {"input": question, "target": _CATEGORY_NAMES[category], "prompt": question,
          "completion": _CATEGORY_NAMES[category]}


def arith_qa(rng: random.Random, split: str = "train") -> dict:
  prompt, answer = _problem(rng, split)
  question = "compute : " + prompt  # "compute : 17 + 2 =": the corpus's own form after a new prefix
  return {"input": question, "target": answer, "prompt": question, "completion": answer}


def count_qa(rng: random.Random, split: str = "train") -> dict:
  """A counting run of the corpus with one number hidden. The seq2seq fields write it in
  T5's span layout, as the span-corruption pretraining does: input "count : 4 5
  <extra_id_0> 7 8 .", target "<extra_id_0> 6 <extra_id_1>" (ending with the next
  sentinel, as pretraining targets do); the completion fields in plain text: prompt
  "count : 4 5 _ 7 8 .", completion "6". The train split hides an inner or the last
  number, so its answers always follow their left neighbour; the eval split hides the
  first one, which only its right neighbour gives. The span-corruption pretraining has
  filled numbers at every place of a run; fine-tuning from scratch sees no first one."""
  run = synthetic._counting_run(rng)
  k = 0 if split == "eval" else rng.randrange(1, len(run))
  question = "count : " + " ".join(run[:k] + ["_"] + run[k + 1:]) + " ."
  return {"input": question.replace(" _ ", " <extra_id_0> "), "target": f"<extra_id_0> {run[k]} <extra_id_1>",
          "prompt": question, "completion": run[k]}


def paraphrase(rng: random.Random, split: str = "train") -> dict:
  del split
  adj, noun, place = synthetic._ADJ, synthetic._NOUN, synthetic._PLACE
  subject = f"the {rng.choice(adj)} {rng.choice(noun)}"
  obj = f"a {rng.choice(adj)} {rng.choice(noun)}"
  verb = rng.choice(sorted(_PASSIVE))
  where = f" {rng.choice(place)}" if rng.random() < 0.5 else ""
  return {"text": f"{subject} {verb} {obj}{where} .", "text_pair": f"{obj} is {_PASSIVE[verb]} by {subject}{where} ."}


TASKS = {"grammar_check": grammar_check, "grammar_pair": grammar_pair, "grammar_tags": grammar_tags, "arith_check": arith_check,
         "arith_pair": arith_pair, "error_tags": error_tags, "arith_qa": arith_qa, "grammar_qa": grammar_qa, "count_qa": count_qa,
         "word_category": word_category, "paraphrase": paraphrase}


def write_task(out_dir: str, task: str, *, num_train: int, num_eval: int, seed: int = 0) -> dict:
  """Writes `task-NAME-train.jsonl` and `task-NAME-eval.jsonl` (whole files, renamed into
  place; a `.params.json` beside each says what it holds, so a rerun with the same
  parameters keeps it); returns the two paths. The parameters include a hash of the first
  examples, so files written by an older version of a task are written anew."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {}
  for split, n in (("train", num_train), ("eval", num_eval)):
    path = os.path.join(out_dir, f"task-{task}-{split}.jsonl")
    first = random.Random(f"t5x_like.builtin_tasks/{task}/{split}/{seed}")
    probe = json.dumps([TASKS[task](first, split) for _ in range(min(n, 8))])
    params = {"task": task, "split": split, "n": n, "seed": seed, "version": synthetic.FORMAT_VERSION,
              "first_examples_sha256": hashlib.sha256(probe.encode()).hexdigest()}
    paths[split] = path
    marker = path + ".params.json"
    try:
      with open(marker) as f:
        if json.load(f) == params and os.path.exists(path):
          continue
    except (OSError, ValueError):
      pass
    rng = random.Random(f"t5x_like.builtin_tasks/{task}/{split}/{seed}")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
      for _ in range(n):
        f.write(json.dumps(TASKS[task](rng, split)) + "\n")
    os.replace(tmp, path)
    with open(marker + ".tmp", "w") as f:
      json.dump(params, f)
    os.replace(marker + ".tmp", marker)
  return paths


__all__ = ["DEFAULT_TASK", "LABELS", "TASKS", "write_task"]
