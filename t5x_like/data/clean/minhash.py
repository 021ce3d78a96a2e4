"""MinHash signatures over word shingles and the LSH banding that finds candidate pairs.

Our own few lines rather than datasketch: the signature must be a pure function of the
text and a fixed seed (so every Beam worker and every process computes the same one), and
numpy does the work in one vectorised step per document. A shingle is `k` consecutive
lower-cased words (punctuation dropped, so edits to it do not count), hashed as
`shingle_hashes` says. Permutation i is the multiply-add-shift hash
`((a_i h + b_i) mod 2^64) >> 32` with random 64-bit a_i (odd) and b_i, Dietzfelbinger's
universal family: the mod is uint64 wrap-around, so no division is needed.
"""

from __future__ import annotations

import functools
import re
import zlib

import numpy as np

_MASK = np.uint64((1 << 32) - 1)
_WORD = re.compile(r"\w+")


@functools.lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  a = rng.integers(0, np.iinfo(np.uint64).max, num_perm, dtype=np.uint64, endpoint=True) | np.uint64(1)
  b = rng.integers(0, np.iinfo(np.uint64).max, num_perm, dtype=np.uint64, endpoint=True)
  return a, b


def shingles(text: str, k: int) -> set[str]:
  words = _WORD.findall(text.lower())
  if len(words) <= k:
    return {" ".join(words)}
  return {" ".join(words[i:i + k]) for i in range(len(words) - k + 1)}


def shingle_hashes(text: str, k: int) -> np.ndarray:
  """32-bit hashes of the distinct k-word shingles: each word's CRC32, combined over k
  words as a rolling 64-bit polynomial hash, folded to 32 bits (vectorised; the same
  values in every process, unlike Python's salted `hash`)."""
  words = _WORD.findall(text.lower()) or [""]
  ids = np.fromiter((zlib.crc32(w.encode()) for w in words), dtype=np.uint64, count=len(words))
  h = ids.copy()
  for i in range(1, min(k, len(words))):
    h = h[:-1] * np.uint64(1_000_003) + ids[i:]
  return np.unique((h ^ (h >> np.uint64(32))) & _MASK)


def signature(text: str, k: int, num_perm: int, seed: int) -> np.ndarray:
  """The MinHash signature (num_perm uint32 values) of the text's k-word shingles."""
  hashes = shingle_hashes(text, k)
  a, b = _permutations(num_perm, seed)
  with np.errstate(over="ignore"):  # the wrap-around is the mod 2^64
    values = (hashes[:, None] * a + b) >> np.uint64(32)
  return values.min(axis=0).astype(np.uint32)


def similarity(s1: np.ndarray, s2: np.ndarray) -> float:
  """The Jaccard similarity the two signatures estimate."""
  return float(np.count_nonzero(s1 == s2)) / len(s1)


def _integrate(f, lo: float, hi: float, steps: int = 200) -> float:
  xs = np.linspace(lo, hi, steps + 1)
  return float(np.trapezoid([f(x) for x in xs], xs))


@functools.lru_cache(maxsize=32)
def bands(threshold: float, num_perm: int) -> tuple[int, int]:
  """(b, r): b bands of r rows with b * r <= num_perm whose S-curve 1 - (1 - s^r)^b best
  separates pairs below and above the threshold (equal weight on the area of false
  positives below it and of false negatives above it, as datasketch chooses)."""
  best, best_err = (1, num_perm), float("inf")
  for b in range(1, num_perm + 1):
    for r in range(1, num_perm // b + 1):
      fp = _integrate(lambda s, b=b, r=r: 1 - (1 - s ** r) ** b, 0.0, threshold, 40)
      fn = _integrate(lambda s, b=b, r=r: (1 - s ** r) ** b, threshold, 1.0, 40)
      if fp + fn < best_err:
        best, best_err = (b, r), fp + fn
  return best


def band_keys(sig: np.ndarray, b: int, r: int) -> list[bytes]:
  """One bucket key per band: the band's number and its rows' bytes."""
  return [bytes([i]) + sig[i * r:(i + 1) * r].tobytes() for i in range(b)]


__all__ = ["band_keys", "bands", "shingles", "signature", "similarity"]
