"""Handmade documents and a corpus with planted near-duplicates for the data clean tests
(a uniquely named module, so it cannot clash with another folder's conftest)."""

from __future__ import annotations

import random

# A clean paragraph: every default step must leave it as it is.
CLEAN = ("The committee met on Tuesday to discuss the budget for the town library. Most members "
         "agreed that the reading room should stay open later in the evening, and that the children's "
         "section needs new shelves. After a short debate they voted to hire two more librarians and "
         "to publish the minutes of the meeting on the notice board by the end of the week.")

_SYLLABLES = ("ka", "to", "ri", "ne", "mu", "sa", "lo", "pe", "di", "va", "qui", "ber", "ston", "mal")


def vocabulary(n: int = 3000, seed: int = 0) -> list[str]:
  rng = random.Random(seed)
  words = set()
  while len(words) < n:
    words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))))
  return sorted(words)


def document(rng: random.Random, vocab: list[str], n_words: int) -> str:
  words = [rng.choice(vocab) for _ in range(n_words)]
  for i in range(0, n_words, 12):  # sentences, with stop words, so the quality filters pass
    words[i] = "the"
  words[5] = "and"
  return " ".join(words) + "."


def near_copy(rng: random.Random, text: str, vocab: list[str], edits: int) -> str:
  """`edits` small edits (a word replaced, deleted or inserted) and a changed case."""
  words = text.split()
  for _ in range(edits):
    i = rng.randrange(len(words))
    kind = rng.random()
    if kind < 0.4:
      words[i] = rng.choice(vocab)
    elif kind < 0.7:
      del words[i]
    else:
      words.insert(i, rng.choice(vocab))
  words[0] = words[0].capitalize()
  return " ".join(words)


def planted_corpus(n_distinct: int, n_copies: int, *, seed: int = 0, words: int = 200,
                   max_edits: int = 3) -> tuple[list[str], set[int], set[int]]:
  """(documents, indices of distinct documents, indices of planted copies); each copy
  comes after its original."""
  rng, vocab = random.Random(seed), vocabulary(seed=seed)
  docs = [document(rng, vocab, words) for _ in range(n_distinct)]
  copies = []
  for _ in range(n_copies):
    src = rng.randrange(n_distinct)
    copies.append(near_copy(rng, docs[src], vocab, rng.randint(1, max_edits)))
  return docs + copies, set(range(n_distinct)), set(range(n_distinct, n_distinct + n_copies))
