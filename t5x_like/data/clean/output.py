"""Output shards: surviving documents in input order, grouped by (input unit, document
number // shard_docs), so a shard's name and bytes depend only on the input and the
options, never on the engine or the number of workers."""

from __future__ import annotations

import os

PREFIX = "clean"


def shard_key(key: tuple, shard_docs: int) -> tuple[int, int]:
  return key[0], key[1] // shard_docs


def shard_name(shard: tuple[int, int], ext: str = "jsonl") -> str:
  return f"{PREFIX}-{shard[0]:05d}-{shard[1]:05d}.{ext}"


def jsonl_bytes(lines: list[tuple[tuple, str]]) -> bytes:
  """The shard's bytes from (key, line) pairs in any order."""
  return "".join(line + "\n" for _, line in sorted(lines)).encode("utf-8")


def write_tfrecord(path: str, lines: list[tuple[tuple, str]], field: str) -> None:
  """The same documents as tf.train.Example records with one bytes feature `field`
  (what data.source=tfrecord with data.tfrecord.feature=FIELD reads)."""
  import json
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  import tensorflow as tf
  with tf.io.TFRecordWriter(path) as w:
    for _, line in sorted(lines):
      text = json.loads(line)[field].encode("utf-8")
      feature = {field: tf.train.Feature(bytes_list=tf.train.BytesList(value=[text]))}
      w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


__all__ = ["PREFIX", "jsonl_bytes", "shard_key", "shard_name", "write_tfrecord"]
