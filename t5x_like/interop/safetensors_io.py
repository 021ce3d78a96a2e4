"""Reading and writing Hugging Face safetensors checkpoints one tensor at a time.

A checkpoint directory holds `model.safetensors`, or shards named in
`model.safetensors.index.json`. Tensors are read lazily by name; writing groups tensors
into shards of bounded size so that at most one shard is in host memory at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


class TensorReader:
  """Name -> numpy array over one or many safetensors files; remembers what was read."""

  def __init__(self, hf_dir: str):
    self.hf_dir = hf_dir
    index = os.path.join(hf_dir, INDEX)
    if os.path.isfile(index):
      with open(index) as f:
        self._file_of = dict(json.load(f)["weight_map"])
    elif os.path.isfile(os.path.join(hf_dir, SINGLE)):
      self._file_of = {}
      with safe_open(os.path.join(hf_dir, SINGLE), framework="numpy") as f:
        self._file_of = {k: SINGLE for k in f.keys()}
    else:
      raise FileNotFoundError(
          f"{hf_dir} has neither {SINGLE} nor {INDEX}; save the model with "
          "save_pretrained(..., safe_serialization=True)")
    self._handles = {}
    self.used: set[str] = set()

  def keys(self) -> list[str]:
    return sorted(self._file_of)

  def __contains__(self, name: str) -> bool:
    return name in self._file_of

  def get(self, name: str) -> np.ndarray:
    if name not in self._file_of:
      raise KeyError(f"tensor {name!r} is not in the checkpoint at {self.hf_dir}")
    file = self._file_of[name]
    if file not in self._handles:
      self._handles[file] = safe_open(os.path.join(self.hf_dir, file), framework="numpy")
    self.used.add(name)
    return self._handles[file].get_tensor(name)

  def unused(self) -> list[str]:
    return sorted(set(self._file_of) - self.used)


def write_sharded(out_dir: str, tensors: Iterable[tuple[str, int, Callable[[], np.ndarray]]],
                  max_shard_bytes: int = 5 * 10**9) -> list[str]:
  """Writes `(name, nbytes, make_array)` entries as safetensors shards; returns the files
  written: the shards, then their index when there is more than one.

  Sizes are known before the arrays are built, so shard boundaries (and file names,
  which carry the shard count) are fixed first and each shard is built, saved and freed.
  """
  os.makedirs(out_dir, exist_ok=True)
  shards: list[list[tuple[str, Callable[[], np.ndarray]]]] = [[]]
  size, total = 0, 0
  for name, nbytes, make in tensors:
    if shards[-1] and size + nbytes > max_shard_bytes:
      shards.append([])
      size = 0
    shards[-1].append((name, make))
    size += nbytes
    total += nbytes
  n = len(shards)
  files = [SINGLE] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
  weight_map = {}
  for file, shard in zip(files, shards, strict=True):
    arrays = {name: np.ascontiguousarray(make()) for name, make in shard}
    save_file(arrays, os.path.join(out_dir, file), metadata={"format": "pt"})
    weight_map.update({name: file for name in arrays})
    del arrays
  if n > 1:
    with open(os.path.join(out_dir, INDEX), "w") as f:
      json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2,
                sort_keys=True)
    files = files + [INDEX]
  return files
