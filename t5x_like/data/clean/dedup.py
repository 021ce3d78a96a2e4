"""Exact and near-duplicate removal, as rules that both engines apply to the same facts.

Exact: documents whose cleaned text has the same SHA-1 are one document; the first (by
input position) stays.

Near: documents that share an LSH bucket (`minhash.bands` for the threshold) are compared
by their signatures; a document goes when an earlier document (by input position) in one
of its buckets has an estimated Jaccard similarity >= the threshold. "Earlier" compares
input positions, not what was kept, so each bucket is decided on its own, in any order and
on any worker, and the union of the buckets' answers is the same set every time. (A chain
A~B~C with A and C below the threshold removes both B and C: C is a near copy of B.)
"""

from __future__ import annotations

import hashlib

import numpy as np

from t5x_like.data.clean import minhash


def content_hash(text: str) -> bytes:
  return hashlib.sha1(text.encode("utf-8")).digest()


def exact_duplicates(hashes: list[tuple[tuple, bytes]]) -> set[tuple]:
  """The keys of every document but the first of each hash; `hashes` is (key, hash)."""
  first: dict[bytes, tuple] = {}
  dups = set()
  for key, h in hashes:
    if h not in first:
      first[h] = key
    elif key < first[h]:
      dups.add(first[h])
      first[h] = key
    else:
      dups.add(key)
  return dups


def bucket_duplicates(members: list[tuple[tuple, bytes]], threshold: float) -> list[tuple]:
  """The keys in one LSH bucket that have an earlier member with similarity >= threshold.
  `members` is (key, signature bytes) in any order."""
  if len(members) < 2:
    return []
  members = sorted(members)
  sigs = [np.frombuffer(s, dtype=np.uint32) for _, s in members]
  dups = []
  for j in range(1, len(members)):
    if any(minhash.similarity(sigs[i], sigs[j]) >= threshold for i in range(j)):
      dups.append(members[j][0])
  return dups


def near_duplicates(signatures: list[tuple[tuple, bytes]], threshold: float, num_perm: int) -> set[tuple]:
  """The near-duplicate keys among (key, signature bytes), on one machine."""
  b, r = minhash.bands(threshold, num_perm)
  buckets: dict[bytes, list] = {}
  for key, sig in signatures:
    for band in minhash.band_keys(np.frombuffer(sig, dtype=np.uint32), b, r):
      buckets.setdefault(band, []).append((key, sig))
  dups = set()
  for members in buckets.values():
    dups.update(bucket_duplicates(members, threshold))
  return dups


__all__ = ["bucket_duplicates", "content_hash", "exact_duplicates", "near_duplicates"]
