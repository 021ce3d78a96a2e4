"""Readers the data tests share: the lines of text files, batches of a dataset, and the
documents recovered from packed causal-LM batches."""

import collections
import glob


def lines_of(pattern):
  """The non-blank lines (stripped) of the files matching `pattern`, in file-name order."""
  out = []
  for path in sorted(glob.glob(pattern)):
    with open(path) as f:
      out.extend(line.strip() for line in f if line.strip())
  return out


def take(ds, n=None):
  """The first `n` batches of `ds` as numpy (all of them when n is None)."""
  it = ds.as_numpy_iterator()
  return [next(it) for _ in range(n)] if n else list(it)


def documents(batches, eos_id, complete=True):
  """Token-id documents recovered from packed batches: segments of consecutive rows are
  joined, and a document ends at its EOS. `complete`: the stream must end at an EOS."""
  docs, cur = [], []
  for b in batches:
    for tokens, segs in zip(b["decoder_target_tokens"], b["decoder_segment_ids"], strict=True):
      for t in tokens[segs > 0].tolist():
        cur.append(t)
        if t == eos_id:
          docs.append(tuple(cur))
          cur = []
  assert cur == [] or not complete, "the stream ended mid-document"
  return docs


def expected_documents(tok, lines):
  """The multiset of token-id documents (EOS appended) that `lines` should become."""
  return collections.Counter(tuple(tok.encode(line) + [tok.eos_id]) for line in lines)
