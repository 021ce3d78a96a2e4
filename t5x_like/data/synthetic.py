"""The corpus the project builds itself: deterministic text with learnable, scorable structure.

Each document is a few short sentences of three kinds:
- arithmetic: "17 + 25 = 42 ." (operands 0-99, + or -, answers may be negative);
- counting runs: "count : 31 32 33 34 35 ." (each number one more than the last);
- templated sentences over a small vocabulary: "the small red fox sees a big dog ."
A 2-4 layer model learns the formats and the counting within minutes on a CPU, and the
arithmetic answers and the counting runs give exact-match skill scores (`skill_examples`,
`counting_fill_examples`, `score_answer`).
Documents are written one per line to text files, so training reads them through the same
tf.data pipeline as any user corpus.
"""

from __future__ import annotations

import glob
import json
import os
import random

MAX_OPERAND = 19  # operands are drawn from 0..MAX_OPERAND inclusive (a table a tiny model learns in minutes)
MIN_DOC_WORDS, MAX_DOC_WORDS = 5, 60
FORMAT_VERSION = 2  # bump when the generator changes, so old corpora are rebuilt

_ADJ = ("small", "big", "red", "blue", "old", "young", "quick", "lazy", "green", "happy",
        "tall", "tiny")
_NOUN = ("fox", "dog", "cat", "bird", "horse", "fish", "child", "farmer", "teacher", "robot",
         "king", "frog")
_VERB = ("sees", "likes", "follows", "helps", "finds", "chases", "watches", "greets")
_PLACE = ("in the park", "near the river", "at school", "on the hill", "in the garden",
          "at home")

# Each consumer has its own random stream, so e.g. asking for more eval documents never
# changes the training documents, and the scoring items are not copied from the eval files.
_TRAIN, _EVAL, _SKILL = "train", "eval", "skill"


def _rng(seed: int, stream: str) -> random.Random:
  # A string seed is hashed with SHA-512 by `random`, identically on every platform and run.
  return random.Random(f"t5x_like.synthetic/{stream}/{seed}")


def arithmetic_problem(rng: random.Random) -> tuple[str, str]:
  """One problem as (prompt, answer), e.g. ("17 - 25 =", "-8")."""
  a, b = rng.randint(0, MAX_OPERAND), rng.randint(0, MAX_OPERAND)
  if rng.random() < 0.5:
    return f"{a} + {b} =", str(a + b)
  return f"{a} - {b} =", str(a - b)


def _counting_run(rng: random.Random) -> list[str]:
  start, n = rng.randint(0, MAX_OPERAND), rng.randint(3, 8)
  return [str(start + i) for i in range(n)]


def _counting(rng: random.Random) -> str:
  return "count : " + " ".join(_counting_run(rng)) + " ."


def _templated(rng: random.Random) -> str:
  subject = f"the {rng.choice(_ADJ)} {rng.choice(_NOUN)}"
  if rng.random() < 0.3:  # a second adjective makes lengths and contexts vary
    subject = f"the {rng.choice(_ADJ)} {rng.choice(_ADJ)} {rng.choice(_NOUN)}"
  s = f"{subject} {rng.choice(_VERB)} a {rng.choice(_ADJ)} {rng.choice(_NOUN)}"
  if rng.random() < 0.5:
    s += " " + rng.choice(_PLACE)
  return s + " ."


def sentence(rng: random.Random) -> str:
  kind = rng.random()
  if kind < 0.6:
    prompt, answer = arithmetic_problem(rng)
    return f"{prompt} {answer} ."
  if kind < 0.8:
    return _counting(rng)
  return _templated(rng)


def document(rng: random.Random) -> str:
  """Sentences until a target length drawn from 5..60 words; never above 60 words."""
  target = rng.randint(MIN_DOC_WORDS, MAX_DOC_WORDS)
  words: list[str] = []
  while len(words) < target:
    s = sentence(rng).split()
    if words and len(words) + len(s) > MAX_DOC_WORDS:
      break
    words.extend(s)
  return " ".join(words)


def documents(seed: int, stream: str, n: int) -> list[str]:
  rng = _rng(seed, stream)
  return [document(rng) for _ in range(n)]


def _write_lines_atomic(path: str, lines: list[str]) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with open(tmp, "w", encoding="ascii") as f:
      f.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)
  except OSError as e:  # a full disk: name the file, leave no partial one behind
    if os.path.exists(tmp):
      os.remove(tmp)
    raise OSError(e.errno, e.strerror, path) from None


def _is_complete(marker: str, params: dict, out_dir: str) -> bool:
  try:
    with open(marker) as f:
      written = json.load(f)
  except (OSError, ValueError):
    return False
  if written.get("params") != params:
    return False
  return all(os.path.isfile(os.path.join(out_dir, name)) for name in written.get("files", []))


def write_corpus(out_dir: str, *, num_train_docs: int = 20_000, num_eval_docs: int = 1_000,
                 seed: int = 0, num_train_shards: int = 4) -> dict:
  """Writes `train-XXXXX-of-YYYYY.txt` shards and one eval file, one document per line.

  Returns the globs `{"train": ..., "eval": ...}`. The `_COMPLETE.json` marker, written
  last, records the parameters: a second call with the same ones returns at once without
  touching the files, and a crash mid-write leaves no marker (files are renamed into
  place whole), so the next call rebuilds.
  """
  if num_train_docs < 1 or num_eval_docs < 1 or not 1 <= num_train_shards <= num_train_docs:
    raise ValueError(f"need num_train_docs >= num_train_shards >= 1 and num_eval_docs >= 1; got "
                     f"{num_train_docs}, {num_train_shards}, {num_eval_docs}")
  params = {"num_train_docs": num_train_docs, "num_eval_docs": num_eval_docs, "seed": seed,
            "num_train_shards": num_train_shards, "version": FORMAT_VERSION}
  globs = {"train": os.path.join(out_dir, "train-*.txt"),
           "eval": os.path.join(out_dir, "eval-*.txt")}
  marker = os.path.join(out_dir, "_COMPLETE.json")
  if _is_complete(marker, params, out_dir):
    return globs

  os.makedirs(out_dir, exist_ok=True)
  if os.path.exists(marker):
    os.remove(marker)  # the corpus is about to change; never leave a stale marker behind
  for stale in glob.glob(globs["train"]) + glob.glob(globs["eval"]):
    os.remove(stale)  # a different shard count would otherwise leave extra files in the glob
  train = documents(seed, _TRAIN, num_train_docs)
  names = []
  bounds = [num_train_docs * i // num_train_shards for i in range(num_train_shards + 1)]
  for i in range(num_train_shards):
    names.append(f"train-{i:05d}-of-{num_train_shards:05d}.txt")
    _write_lines_atomic(os.path.join(out_dir, names[-1]), train[bounds[i]:bounds[i + 1]])
  names.append("eval-00000-of-00001.txt")
  _write_lines_atomic(os.path.join(out_dir, names[-1]), documents(seed, _EVAL, num_eval_docs))

  tmp = f"{marker}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump({"params": params, "files": names}, f, indent=2)
  os.replace(tmp, marker)
  return globs


def skill_examples(n: int, *, seed: int = 1) -> list[tuple[str, str]]:
  """`n` arithmetic items `(prompt, answer)` such as `("17 + 25 =", "42")`.

  They follow the distribution of the problems in the documents but come from their own
  stream, so they are not copied from the eval files. The space holds only
  2 * (MAX_OPERAND + 1)**2 = 800 problems, so the training documents hold nearly all of
  them: the score measures a learned table and its format, not generalisation.
  """
  rng = _rng(seed, _SKILL)
  return [arithmetic_problem(rng) for _ in range(n)]


def counting_fill_examples(n: int, *, seed: int = 1) -> list[tuple[str, str, str]]:
  """`n` counting runs with one inner number hidden, as `(before, answer, after)`, e.g.
  `("count : 5 6", "7", "8 9 .")`: the answer follows from its left neighbour (and from
  the right one when the hidden number is not the last).

  Runs follow the documents' distribution (start 0..MAX_OPERAND, 3-8 numbers); the hidden
  number is never the first, so its left neighbour is always shown. Own random stream.
  """
  rng = _rng(seed, _SKILL + "/counting")
  items = []
  for _ in range(n):
    run = _counting_run(rng)
    k = rng.randint(1, len(run) - 1)
    items.append(("count : " + " ".join(run[:k]), run[k], " ".join(run[k + 1:] + ["."])))
  return items


def score_answer(predicted_text: str, answer: str) -> bool:
  """True when the first whitespace-separated token of the continuation is the answer."""
  words = predicted_text.strip().split()
  return bool(words) and words[0] == answer.strip()


__all__ = ["MAX_OPERAND", "arithmetic_problem", "counting_fill_examples", "document", "documents", "score_answer",
           "skill_examples", "write_corpus"]
