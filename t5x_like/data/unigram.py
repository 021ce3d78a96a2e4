"""The unigram baseline a trained language model must beat: the add-one-smoothed unigram
distribution of the train documents' tokens, and its loss on the eval tokens."""

from __future__ import annotations

import math
import re

import numpy as np
import tensorflow as tf

from t5x_like.data.long_documents import PIECE_CHARS
from t5x_like.data.tokenizer import Tokenizer, list_files
from t5x_like.errors import DataError

_PIECE_END = re.compile(r"\S{0,200}\s")


def _encode_long(tokenizer: Tokenizer, text: str, piece_chars: int = PIECE_CHARS) -> list[int]:
  """Ids of `text`, encoded in pieces of about `piece_chars` characters cut after
  whitespace (within 200 characters, else mid-word), as the input pipeline tokenizes a long
  document (data/long_documents.py): SentencePiece needs about 100 bytes of memory per input
  byte of one string, gigabytes for a line of tens of megabytes."""
  if len(text) <= piece_chars:
    return tokenizer.encode(text)
  ids, start = [], 0
  while start < len(text):
    end = start + piece_chars
    m = _PIECE_END.match(text, end) if end < len(text) else None
    end = m.end() if m else end
    ids += tokenizer.encode(text[start:end])
    start = end
  return ids


def _documents(tokenizer: Tokenizer, pattern: str, max_docs: int, max_chars: int):
  """Token ids (EOS appended) of the first `max_docs` non-empty lines, files in sorted order,
  and of no more than `max_chars` characters in all (the last document cut short)."""
  n = chars = 0
  for path in list_files(pattern):
    with tf.io.gfile.GFile(path, "rb") as f:
      for raw in f:
        line = raw.decode("utf-8", errors="replace").strip()[:max_chars - chars]
        if not line:
          continue
        yield _encode_long(tokenizer, line) + [tokenizer.eos_id]
        n, chars = n + 1, chars + len(line)
        if n >= max_docs or chars >= max_chars:
          return


def unigram_log_probs(tokenizer: Tokenizer, train_glob: str, vocab_size: int = 0,
                      max_docs: int = 5000, max_chars: int = 1 << 24) -> np.ndarray:
  """Log-probabilities `[vocab_size]` of the add-one-smoothed unigram distribution of the
  first `max_docs` train documents (each with its EOS), and at most `max_chars` (16 Mi)
  characters of them, so a corpus of long documents (books, 50 MB lines) costs seconds, not
  the whole corpus; `vocab_size` may exceed the tokenizer's (sentinels), those ids get the
  smoothing count alone."""
  counts = np.zeros(max(vocab_size, tokenizer.vocab_size), np.float64)
  for ids in _documents(tokenizer, train_glob, max_docs, max_chars):
    np.add.at(counts, ids, 1.0)
  return np.log(counts + 1.0) - math.log(counts.sum() + counts.size)


def unigram_loss(log_probs: np.ndarray, target_counts: np.ndarray) -> float:
  """Cross-entropy in nats per token of targets (a weighted histogram of ids) under a
  unigram model: what a model that ignores context reaches on the same tokens, so a
  trained model's eval loss must go below it."""
  total = float(target_counts.sum())
  if total <= 0:
    raise DataError("no eval tokens to compute the unigram baseline on")
  return float(-(target_counts * log_probs[:target_counts.size]).sum() / total)


__all__ = ["unigram_log_probs", "unigram_loss"]
