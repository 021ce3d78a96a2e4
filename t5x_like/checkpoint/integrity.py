"""Checksums that make a garbled checkpoint an error instead of a silent load.

Every array of the state gets two 32-bit sums of its bits, each word mixed with its index
(murmur3's finalizer), computed on the devices with integer adds. Integer addition is exact
and order-free, so the sums do not depend on the mesh, the device count or the process
count: a checkpoint written on a (2,2,2) mesh verifies on one device. They are written into
the step's metadata at save time and recomputed from the restored arrays; a changed bit
changes a sum (the chance that garbage matches both is about 2^-64). The data-iterator
files and the metadata itself carry SHA-256 digests.
"""

from __future__ import annotations

import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

ALGORITHM = "mix32x2-sum"
_SEEDS = ((0x9E3779B1, 0x85EBCA6B), (0xC2B2AE35, 0x27D4EB2F))


def _words(x: jax.Array) -> jax.Array:
  """The array's bits as uint32 words (1-, 2-byte dtypes widened, 8-byte split)."""
  itemsize = jnp.dtype(x.dtype).itemsize
  if itemsize == 8:
    return jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
  if itemsize == 4:
    return jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
  if itemsize == 1 and x.dtype == jnp.bool_:
    return x.astype(jnp.uint32).reshape(-1)
  unsigned = {1: jnp.uint8, 2: jnp.uint16}[itemsize]
  return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32).reshape(-1)


def _mix(words: jax.Array, index: jax.Array, k1: int, k2: int) -> jax.Array:
  h = words * jnp.uint32(k1) + index * jnp.uint32(k2) + jnp.uint32(0x165667B1)
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def _sums(x: jax.Array) -> jax.Array:
  w = _words(x)
  i = jax.lax.iota(jnp.uint32, w.shape[0])
  return jnp.stack([jnp.sum(_mix(w, i, *k), dtype=jnp.uint32) for k in _SEEDS])


_JITTED = {}


def _all_sums(tree):
  """The sums of every leaf, replicated on the leaves' mesh so that every process can read
  them from its own devices."""
  sharding = getattr(jax.tree.leaves(tree)[0], "sharding", None)
  mesh = getattr(sharding, "mesh", None)
  if mesh not in _JITTED:
    out = None if mesh is None else NamedSharding(mesh, PartitionSpec())
    _JITTED[mesh] = jax.jit(lambda t: jax.tree.map(_sums, t), out_shardings=out)
  return _JITTED[mesh](tree)


def _paths(tree) -> list[str]:
  return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]


def _local(x) -> np.ndarray:
  return np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else np.asarray(x)


def array_sums(tree) -> dict[str, list[int]]:
  """{path: [sum1, sum2]} of every array in `tree` (sharded or not)."""
  sums = _all_sums(tree)
  return {p: [int(a) for a in _local(s)] for p, s in zip(_paths(tree), jax.tree.leaves(sums), strict=True)}


def mismatches(tree, expected: dict[str, list[int]]) -> list[str]:
  """The arrays of `tree` whose sums differ from `expected` (or that it lacks)."""
  got = array_sums(tree)
  return sorted(p for p in set(got) | set(expected) if got.get(p) != expected.get(p))


def file_digest(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def meta_digest(meta: dict) -> str:
  """SHA-256 of the metadata without its own digest, in a canonical JSON form."""
  body = {k: v for k, v in meta.items() if k != "digest"}
  return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
