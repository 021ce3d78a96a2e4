"""The reader interface: one class per source turns the config's input for a role
("train" or "eval") into this host's stream of document strings.

Every reader uses tf.data ops only, so the iterator state (file positions, shuffle buffers)
is saved by `tf.train.Checkpoint(iterator=it)`. The template in `Reader.documents` is the
same for all: name the input, check what can be checked before the graph, read this
host's share with records checked in blocks (`checks.py`), then the seeded shuffle buffer.
"""

from __future__ import annotations

import abc
import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import jax  # noqa: E402
import tensorflow as tf  # noqa: E402

from t5x_like.config import DataConfig  # noqa: E402
from t5x_like.data.readers import checks  # noqa: E402

FILE_CYCLE = 4  # files (or TFDS shards) read at once, interleaved, when training


@dataclasses.dataclass(frozen=True)
class Share:
  """Which part of the input this host reads, and how."""

  process_index: int = 0
  process_count: int = 1
  shuffle: bool = True
  repeat: bool = True
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class Input:
  """What one role reads: a files glob or a TFDS split, and the config key that set it."""

  files: str
  split: str
  key: str


class Reader(abc.ABC):
  """A document source. `cfg` is the data config of the stream (a mixture component's for
  mixtures); `key_prefix` names its config keys in errors ("data." or "data.mixture[1].")."""

  def __init__(self, cfg: DataConfig, key_prefix: str = "data."):
    self.cfg, self.key_prefix = cfg, key_prefix

  @abc.abstractmethod
  def input_for(self, role: str, files: str = "") -> Input:
    """The input of `role`; `files`, when given, replaces the config's glob."""

  @abc.abstractmethod
  def read(self, inp: Input, share: Share, counter, name: str) -> tf.data.Dataset:
    """This host's documents of `inp`, records checked in blocks (`counter`: skip and
    count bad ones, None: fail on the first); when training (`share.shuffle`), each block
    through `long_documents.cut`."""

  def describe(self, inp: Input) -> str:
    """The name of the input in errors and skip counts: its config key and value."""
    return f"{inp.key} {inp.files}"

  def documents(self, inp: Input, share: Share) -> tf.data.Dataset:
    """This host's documents (scalar strings), shuffled with a seeded buffer when training
    (where `read` has cut long documents, `long_documents.py`)."""
    name = self.describe(inp)
    counter = checks.skip_counter(name) if self.cfg.skip_bad_lines else None
    docs = self.read(inp, share, counter, name)
    size = 0
    if share.shuffle:
      mean_bytes = self.mean_document_bytes(inp, share)
      size = shuffle_size(self.cfg, mean_bytes)
      if size < self.cfg.shuffle_buffer and jax.process_index() == 0:
        print(f"[t5x_like] {name}: documents of about {mean_bytes / 1024:,.0f} KiB, so the shuffle "
              f"buffer holds {size:,} of them (data.shuffle_buffer {self.cfg.shuffle_buffer:,}, at "
              f"most data.shuffle_buffer_mib {self.cfg.shuffle_buffer_mib} MiB of text)", flush=True)
    if size > 1:
      docs = docs.shuffle(size, seed=share.seed + 1, reshuffle_each_iteration=True)
    return docs

  def mean_document_bytes(self, inp: Input, share: Share) -> float | None:
    """About how many bytes a training document of this host's `inp` holds once
    `long_documents.cut` has cut the long ones, from a sample of the input; None when
    unknown (the shuffle buffer then counts documents only)."""
    del inp, share
    return None


def shuffle_size(cfg: DataConfig, mean_bytes: float | None) -> int:
  """Documents in the shuffle buffer: `data.shuffle_buffer`, and no more than
  `data.shuffle_buffer_mib` of text at `mean_bytes` a document.

  The buffer is held in memory and written into every checkpoint with the iterator's
  state. At 10,000 documents, a corpus of long documents (cut to about 64 KiB each) made
  265 MB of iterator state from one 48 MB line, 29 times its model's state, at every
  checkpoint, and its first batch waited 36 s for the buffer to fill."""
  if mean_bytes is None or mean_bytes <= 0:
    return cfg.shuffle_buffer
  return min(cfg.shuffle_buffer, max(1, int(cfg.shuffle_buffer_mib * (1 << 20) // mean_bytes)))


__all__ = ["FILE_CYCLE", "Input", "Reader", "Share", "shuffle_size"]
