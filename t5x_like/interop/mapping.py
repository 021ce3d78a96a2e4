"""Declarative weight mappings between our parameter tree and Hugging Face tensor names.

A `Rule` ties one HF tensor to one or more of our parameters, with a transform each way.
HF names containing `{i}` are per layer: layer i's tensor becomes (or comes from) index i
of the leading `layers` axis of our stacked parameter. The same rule list serves import
and export, so the two directions cannot drift apart.

Every transform checks the shapes it expects; a checkpoint that does not fit the config
fails with the tensor's name instead of being reshaped into nonsense.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax
import numpy as np
from flax import nnx

from t5x_like.config import ModelConfig

Path = tuple[str, ...]


class Rule(NamedTuple):
  ours: tuple[str, ...]  # our parameter paths, "stack/blocks/self_attn/wq"
  hf: str  # the HF tensor name; "{i}" marks a per-layer tensor
  to_ours: Callable[..., tuple[np.ndarray, ...]]  # (hf_array, *our_shapes) -> our arrays
  to_hf: Callable[..., np.ndarray]  # (*our_arrays) -> hf_array


def _check(name: str, got, want) -> None:
  if tuple(got) != tuple(want):
    raise ValueError(f"HF tensor {name!r} has shape {tuple(got)}; this config expects {tuple(want)}")


def _as_matrix(a: np.ndarray, in_axes: int) -> np.ndarray:
  """Folds our `[in..., out...]` layout to 2-D (1-D for biases, in_axes=0)."""
  return a.reshape(-1) if in_axes == 0 else a.reshape(math.prod(a.shape[:in_axes]), -1)


def same(ours: str, hf: str) -> Rule:
  def to_ours(t, shape):
    _check(hf, t.shape, shape)
    return (t,)
  return Rule((ours,), hf, to_ours, lambda a: a)


def folded(ours: str, hf: str, in_axes: int = 1) -> Rule:
  """HF stores `[in, out]` (GPT-2 Conv1D) or a flat bias; ours splits heads out."""
  def to_ours(t, shape):
    _check(hf, t.shape, _as_matrix(np.empty(shape, np.int8), in_axes).shape)
    return (t.reshape(shape),)
  return Rule((ours,), hf, to_ours, lambda a: _as_matrix(a, in_axes))


def linear(ours: str, hf: str, in_axes: int = 1) -> Rule:
  """torch.nn.Linear stores `[out, in]`: transpose, then split heads out."""
  def to_ours(t, shape):
    _check(hf, t.shape, _as_matrix(np.empty(shape, np.int8), in_axes).T.shape)
    return (t.T.reshape(shape),)
  return Rule((ours,), hf, to_ours, lambda a: _as_matrix(a, in_axes).T)


def fused(ours: tuple[str, ...], hf: str, in_axes: int = 1) -> Rule:
  """One HF tensor holding several of ours side by side on its last axis (GPT-2 c_attn)."""
  def to_ours(t, *shapes):
    mats = [_as_matrix(np.empty(s, np.int8), in_axes).shape for s in shapes]
    _check(hf, t.shape, mats[0][:-1] + (sum(m[-1] for m in mats),))
    parts = np.split(t, np.cumsum([m[-1] for m in mats])[:-1], axis=-1)
    return tuple(p.reshape(s) for p, s in zip(parts, shapes, strict=True))
  return Rule(ours, hf, to_ours,
              lambda *arrays: np.concatenate([_as_matrix(a, in_axes) for a in arrays], axis=-1))


# ------------------------------------------------------------------ applying the rules


def abstract_params(cfg: ModelConfig) -> dict[Path, jax.ShapeDtypeStruct]:
  """Flat {path: ShapeDtypeStruct} of the model `cfg` builds, without allocating it."""
  from t5x_like.models import create_model
  model = nnx.eval_shape(lambda: create_model(cfg, nnx.Rngs(0)))
  return flatten(nnx.to_pure_dict(nnx.split(model)[1]))


def flatten(tree: dict, prefix: Path = ()) -> dict[Path, object]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, prefix + (str(k),)))
    else:
      out[prefix + (str(k),)] = v
  return out


def unflatten(flat: dict[Path, object]) -> dict:
  tree: dict = {}
  for path, v in flat.items():
    node = tree
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = v
  return tree


def _paths(rule: Rule, abstract: dict[Path, object]) -> list[Path]:
  paths = [tuple(p.split("/")) for p in rule.ours]
  for p in paths:
    if p not in abstract:
      raise ValueError(f"rule for {rule.hf!r} names {'/'.join(p)}, which this model does not have")
  return paths


def load_params(get: Callable[[str], np.ndarray], rules: list[Rule],
                abstract: dict[Path, jax.ShapeDtypeStruct]) -> dict:
  """Builds our nested params dict, one HF tensor at a time, stacking layers."""
  flat: dict[Path, np.ndarray] = {}
  for rule in rules:
    paths = _paths(rule, abstract)
    if "{i}" in rule.hf:
      shapes = [abstract[p].shape[1:] for p in paths]
      per_layer = [rule.to_ours(get(rule.hf.format(i=i)), *shapes)
                   for i in range(abstract[paths[0]].shape[0])]
      arrays = [np.stack([layer[j] for layer in per_layer]) for j in range(len(paths))]
    else:
      arrays = rule.to_ours(get(rule.hf), *[abstract[p].shape for p in paths])
    for p, a in zip(paths, arrays, strict=True):
      flat[p] = np.asarray(a, dtype=abstract[p].dtype)
  missing = sorted("/".join(p) for p in set(abstract) - set(flat))
  if missing:
    raise ValueError(f"no HF tensor maps to these parameters: {', '.join(missing)}")
  return unflatten(flat)


def export_tensors(params: dict, rules: list[Rule],
                   dtype=None) -> Iterator[tuple[str, int, Callable[[], np.ndarray]]]:
  """Yields `(hf_name, nbytes, make_array)` for `safetensors_io.write_sharded`."""
  flat = {p: np.asarray(a) for p, a in flatten(params).items()}

  def cast(a):
    return a if dtype is None else a.astype(dtype)

  for rule in rules:
    paths = _paths(rule, flat)
    arrays = [flat[p] for p in paths]
    itemsize = np.dtype(dtype or arrays[0].dtype).itemsize
    if "{i}" in rule.hf:
      nbytes = sum(math.prod(a.shape[1:]) for a in arrays) * itemsize
      for i in range(arrays[0].shape[0]):
        yield (rule.hf.format(i=i), nbytes,
               lambda rule=rule, arrays=arrays, i=i: cast(rule.to_hf(*[a[i] for a in arrays])))
    else:
      nbytes = sum(a.size for a in arrays) * itemsize
      yield rule.hf, nbytes, lambda rule=rule, arrays=arrays: cast(rule.to_hf(*arrays))
