"""Batches from the host's tf.data pipeline to global jax.Arrays: every process builds its
own pipeline over its share of the data, and `jax.make_array_from_process_local_data`
assembles the global batch on the mesh."""

from __future__ import annotations

import dataclasses
import hashlib

import jax
import numpy as np

from t5x_like.config import Config
from t5x_like.data import prepare
from t5x_like.data.prepare import DataFiles


def to_global(batch_np: dict, sharding) -> dict:
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch_np.items()}


def batch_fingerprint(batch: dict) -> int:
  """A 48-bit digest of this host's batch (every feature, in key order): equal digests at
  equal steps show that two runs, e.g. a straight one and a resumed one, read the same data.
  Exact as a float in metrics.jsonl."""
  h = hashlib.blake2b(digest_size=6)
  for k in sorted(batch):
    h.update(k.encode())
    h.update(np.ascontiguousarray(batch[k]).tobytes())
  return int.from_bytes(h.digest(), "big")


@dataclasses.dataclass
class Feed:
  """This host's training stream (one iterator for the whole run, saved with every
  checkpoint) and a factory of fresh eval passes."""

  cfg: Config
  files: DataFiles
  sharding: object  # the batch NamedSharding
  train: bool = True  # False: eval only (t5x-like eval), no training stream is built

  def __post_init__(self):
    self.per_host_batch = self.cfg.train.batch_size // jax.process_count()
    # The files the training stream reads, saved with each checkpoint: a resume over other files is refused.
    self.train_input = prepare.train_input(self.cfg, self.files) if self.train else {}
    self.train_iterator = iter(self._dataset(self.files.train, shuffle=True, repeat=True)) if self.train else None
    # The eval input is built (its files found and probed) now, before the first step, not
    # when the first eval comes; every eval pass then iterates it afresh.
    self._eval = self._dataset(self.files.eval, shuffle=False, repeat=False) if self.cfg.train.eval_batches else None

  def _dataset(self, files: str, *, shuffle: bool, repeat: bool, skip: int = 0):
    from t5x_like.data import pipeline  # imports TensorFlow

    return pipeline.make_dataset(self.cfg.data, files=files, tokenizer_path=self.files.tokenizer,
                                 batch_size=self.per_host_batch, process_index=jax.process_index(),
                                 process_count=jax.process_count(), shuffle=shuffle, repeat=repeat,
                                 skip_batches=skip, num_labels=self.cfg.model.num_labels)

  def restart_after(self, tokens_seen: float) -> int:
    """A fresh training stream that skips the batches worth `tokens_seen` tokens at today's
    batch size and seq_len (a resume whose saved data position cannot be used); returns
    how many it skips. The skipped batches are built and dropped inside tf.data."""
    batches = int(tokens_seen // (self.cfg.train.batch_size * self.cfg.data.seq_len))
    self.train_iterator = iter(self._dataset(self.files.train, shuffle=True, repeat=True, skip=batches))
    return batches

  def eval_dataset(self):
    return self._eval if self._eval is not None else self._dataset(self.files.eval, shuffle=False, repeat=False)

  def next_train(self) -> dict:
    return next_batch(self.train_iterator)

  def global_batch(self, batch_np: dict) -> dict:
    return to_global(batch_np, self.sharding)


def next_batch(it) -> dict:
  """The next host batch as numpy; a bad record in the input leaves as its DataError."""
  from t5x_like.data.readers import data_errors

  with data_errors():
    return {k: v.numpy() for k, v in next(it).items()}
