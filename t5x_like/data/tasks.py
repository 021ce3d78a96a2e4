"""Labelled examples for fine-tuning: JSON lines with named fields -> one row per example.

The task objectives (`classification`, `tagging`, `seq2seq`, `completion`, `pairs`) read
each line's named fields (`data.task.*_field`), tokenize them in Python with the run's
SentencePiece model and hold the rows as arrays. Fine-tuning sets are small next to a
pretraining corpus (a million rows of 128 tokens are 0.5 GB), and arrays give an exact
global shuffle: every epoch is a seeded permutation of all examples
(`tf.random.experimental.index_shuffle`, stateless), so the tf.data iterator state is two
counters, a resume continues exactly, and no example waits behind a shuffle buffer.

Rows (the features of each family, `t5x_like/features.py`):
- classification: `text` [EOS `text_pair`] EOS, token types 0/1, the label in
  `encoder_class_labels`; a pair too long for `data.seq_len` loses tokens from its longer
  side first (as BERT's fine-tuning does).
- tagging: the words of `tokens`, each tokenized on its own; a word's tag is the target of
  its first piece (weight 1), its other pieces weigh 0; words past `seq_len` are cut.
- seq2seq: `input` EOS in the encoder, `target` EOS in the decoder (loss on all of it).
- completion: `prompt` `completion` EOS in the decoder, loss on the completion and EOS
  only; a long prompt loses its beginning.
- pairs: `text` EOS as segment 1 and `text_pair` EOS as segment 2 of one row, each at most
  half the row; the encoder attends within each segment, and the embed head pools them.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from t5x_like import features as F  # noqa: E402
from t5x_like.config import DataConfig  # noqa: E402
from t5x_like.data import json_lines, objectives  # noqa: E402
from t5x_like.data.tokenizer import Tokenizer, list_files  # noqa: E402
from t5x_like.errors import DataError  # noqa: E402


@dataclasses.dataclass
class Example:
  where: str  # "path:line" for errors
  fields: dict


def read_examples(pattern: str, key: str, skip_bad: bool = False) -> list[Example]:
  """Every non-blank JSON line of the files of `pattern` (sorted), as objects."""
  out = []
  for path in list_files(pattern, key):
    with tf.io.gfile.GFile(path, "rb") as f:
      for n, raw in enumerate(f, 1):
        if not raw.strip():
          continue
        try:
          value = json_lines.loads(raw)
        except ValueError as e:
          if skip_bad:
            continue
          raise DataError(f"{path}: line {n} is not a JSON object ({e}); fix the line or set "
                          "data.skip_bad_lines=true") from None
        if not isinstance(value, dict):
          if skip_bad:
            continue
          raise DataError(f"{path}: line {n} is a JSON {type(value).__name__}, not an object with named fields")
        out.append(Example(f"{path}:{n}", value))
  if not out:
    raise DataError(f"{key}={pattern}: no JSON lines found; the files are empty or blank")
  return out


def _field(ex: Example, name: str, kind: type, key: str, optional: bool = False):
  value = ex.fields.get(name)
  if value is None and optional:
    return None
  if not isinstance(value, kind) or isinstance(value, bool):
    raise DataError(f"{ex.where}: field \"{name}\" ({key}) must be a {kind.__name__}, got "
                    f"{type(value).__name__ if name in ex.fields else 'nothing'}; fix the line or set {key}")
  return value


def _encoded(tok: Tokenizer, ex: Example, name: str, key: str) -> list[int]:
  """The ids of a text field; an error in it (an unknown sentinel) names the line."""
  try:
    return tok.encode(_field(ex, name, str, key))
  except DataError as e:
    if str(e).startswith(ex.where):
      raise
    raise DataError(f"{ex.where}: {e}") from None


def label_index(value, labels: list, num_labels: int, ex: Example, key: str) -> int:
  """A label's class id: its position in `labels`, or an integer id below `num_labels`."""
  if labels and isinstance(value, str) and value in labels:
    return labels.index(value)
  if labels and str(value) in [str(x) for x in labels]:
    return [str(x) for x in labels].index(str(value))
  if isinstance(value, int) and not isinstance(value, bool) and 0 <= value and (value < num_labels or not num_labels):
    return value
  names = f"one of {labels}" if labels else f"an integer in [0, {num_labels})"
  if value is None:
    raise DataError(f"{ex.where}: {key} is missing (it must be {names}); fix the line, or name the field with "
                    "data.task.label_field")
  raise DataError(f"{ex.where}: {key} {value!r} is not {names}; fix the line or data.task.labels")


def _blank(n: int, length: int) -> np.ndarray:
  return np.zeros((n, length), np.int32)


class Rows:
  """Fixed-width rows of one objective, filled one example at a time."""

  def __init__(self, n: int, lengths: dict[str, int]):
    self.arrays = {name: (np.zeros((n, w), np.float32) if name.endswith("loss_weights") else _blank(n, w))
                   for name, w in lengths.items()}

  def put(self, i: int, name: str, values) -> None:
    self.arrays[name][i, :len(values)] = values


def _positions(n: int) -> list[int]:
  return list(range(n))


def classification(examples, cfg: DataConfig, tok: Tokenizer, num_labels: int) -> dict:
  t, L, eos = cfg.task, cfg.seq_len, tok.eos_id
  rows = Rows(len(examples), {k: L for k in (F.ENCODER_INPUT_TOKENS, F.ENCODER_TARGET_TOKENS, F.ENCODER_SEGMENT_IDS,
                                             F.ENCODER_POSITIONS, F.ENCODER_LOSS_WEIGHTS,
                                             F.ENCODER_TOKEN_TYPE_IDS)} | {F.ENCODER_CLASS_LABELS: 1})
  for i, ex in enumerate(examples):
    a = _encoded(tok, ex, t.text_field, "data.task.text_field")
    pair = _field(ex, t.pair_field, str, "data.task.pair_field", optional=True)
    b = tok.encode(pair) if pair is not None else None
    budget = L - (2 if b is not None else 1)
    if b is None:
      a = a[:budget]
    else:
      while len(a) + len(b) > budget:  # the longer side loses a token
        if len(a) >= len(b):
          a = a[:-1]
        else:
          b = b[:-1]
    tokens = a + [eos] + ((b + [eos]) if b is not None else [])
    types = [0] * (len(a) + 1) + ([1] * (len(b) + 1) if b is not None else [])
    label = label_index(ex.fields.get(t.label_field), t.labels, num_labels, ex, f"field \"{t.label_field}\"")
    for name, values in ((F.ENCODER_INPUT_TOKENS, tokens), (F.ENCODER_TARGET_TOKENS, tokens),
                         (F.ENCODER_SEGMENT_IDS, [1] * len(tokens)), (F.ENCODER_POSITIONS, _positions(len(tokens))),
                         (F.ENCODER_TOKEN_TYPE_IDS, types), (F.ENCODER_CLASS_LABELS, [label])):
      rows.put(i, name, values)
  return rows.arrays


def tagging(examples, cfg: DataConfig, tok: Tokenizer, num_labels: int) -> dict:
  t, L, eos = cfg.task, cfg.seq_len, tok.eos_id
  rows = Rows(len(examples), {k: L for k in (F.ENCODER_INPUT_TOKENS, F.ENCODER_TARGET_TOKENS, F.ENCODER_SEGMENT_IDS,
                                             F.ENCODER_POSITIONS, F.ENCODER_LOSS_WEIGHTS)})
  for i, ex in enumerate(examples):
    words = _field(ex, t.tokens_field, list, "data.task.tokens_field")
    tags = _field(ex, t.tags_field, list, "data.task.tags_field")
    if len(words) != len(tags):
      raise DataError(f"{ex.where}: {len(words)} words in \"{t.tokens_field}\" but {len(tags)} tags in "
                      f"\"{t.tags_field}\"; every word needs one tag")
    tokens, targets, weights = [], [], []
    for word, tag in zip(words, tags, strict=True):
      pieces = tok.encode(str(word))
      if not pieces:
        continue
      if len(tokens) + len(pieces) > L - 1:
        break
      tag_id = label_index(tag, t.labels, num_labels, ex, f"tag of word {word!r}")
      tokens += pieces
      targets += [tag_id] * len(pieces)
      weights += [1.0] + [0.0] * (len(pieces) - 1)
    tokens.append(eos)
    targets.append(0)
    weights.append(0.0)
    for name, values in ((F.ENCODER_INPUT_TOKENS, tokens), (F.ENCODER_TARGET_TOKENS, targets),
                         (F.ENCODER_SEGMENT_IDS, [1] * len(tokens)), (F.ENCODER_POSITIONS, _positions(len(tokens))),
                         (F.ENCODER_LOSS_WEIGHTS, weights)):
      rows.put(i, name, values)
  return rows.arrays


def seq2seq(examples, cfg: DataConfig, tok: Tokenizer, num_labels: int) -> dict:
  t, L, eos = cfg.task, cfg.seq_len, tok.eos_id
  T = t.targets_len or L
  rows = Rows(len(examples), {F.ENCODER_INPUT_TOKENS: L, F.ENCODER_SEGMENT_IDS: L, F.ENCODER_POSITIONS: L,
                              F.DECODER_INPUT_TOKENS: T, F.DECODER_TARGET_TOKENS: T, F.DECODER_SEGMENT_IDS: T,
                              F.DECODER_POSITIONS: T, F.DECODER_LOSS_WEIGHTS: T})
  for i, ex in enumerate(examples):
    inputs = _encoded(tok, ex, t.input_field, "data.task.input_field")[:L - 1] + [eos]
    targets = _encoded(tok, ex, t.target_field, "data.task.target_field")[:T - 1] + [eos]
    for name, values in ((F.ENCODER_INPUT_TOKENS, inputs), (F.ENCODER_SEGMENT_IDS, [1] * len(inputs)),
                         (F.ENCODER_POSITIONS, _positions(len(inputs))), (F.DECODER_TARGET_TOKENS, targets),
                         (F.DECODER_INPUT_TOKENS, [0] + targets[:-1]), (F.DECODER_SEGMENT_IDS, [1] * len(targets)),
                         (F.DECODER_POSITIONS, _positions(len(targets))),
                         (F.DECODER_LOSS_WEIGHTS, [1.0] * len(targets))):
      rows.put(i, name, values)
  return rows.arrays


def completion(examples, cfg: DataConfig, tok: Tokenizer, num_labels: int) -> dict:
  t, L, eos = cfg.task, cfg.seq_len, tok.eos_id
  rows = Rows(len(examples), {k: L for k in (F.DECODER_INPUT_TOKENS, F.DECODER_TARGET_TOKENS, F.DECODER_SEGMENT_IDS,
                                             F.DECODER_POSITIONS, F.DECODER_LOSS_WEIGHTS)})
  for i, ex in enumerate(examples):
    prompt = _encoded(tok, ex, t.prompt_field, "data.task.prompt_field")
    answer = (_encoded(tok, ex, t.completion_field, "data.task.completion_field") + [eos])[:L - 1]
    prompt = prompt[max(len(prompt) - (L - len(answer)), 0):]
    targets = prompt + answer
    for name, values in ((F.DECODER_TARGET_TOKENS, targets), (F.DECODER_INPUT_TOKENS, [0] + targets[:-1]),
                         (F.DECODER_SEGMENT_IDS, [1] * len(targets)), (F.DECODER_POSITIONS, _positions(len(targets))),
                         (F.DECODER_LOSS_WEIGHTS, [0.0] * len(prompt) + [1.0] * len(answer))):
      rows.put(i, name, values)
  return rows.arrays


def pairs(examples, cfg: DataConfig, tok: Tokenizer, num_labels: int) -> dict:
  t, L, eos = cfg.task, cfg.seq_len, tok.eos_id
  half = L // 2
  rows = Rows(len(examples), {k: L for k in (F.ENCODER_INPUT_TOKENS, F.ENCODER_TARGET_TOKENS, F.ENCODER_SEGMENT_IDS,
                                             F.ENCODER_POSITIONS, F.ENCODER_LOSS_WEIGHTS)})
  for i, ex in enumerate(examples):
    a = _encoded(tok, ex, t.text_field, "data.task.text_field")[:half - 1] + [eos]
    b = _encoded(tok, ex, t.pair_field, "data.task.pair_field")[:half - 1] + [eos]
    for name, values in ((F.ENCODER_INPUT_TOKENS, a + b), (F.ENCODER_TARGET_TOKENS, a + b),
                         (F.ENCODER_SEGMENT_IDS, [1] * len(a) + [2] * len(b)),
                         (F.ENCODER_POSITIONS, _positions(len(a)) + _positions(len(b)))):
      rows.put(i, name, values)
  return rows.arrays


TASKS = {"classification": classification, "tagging": tagging, "seq2seq": seq2seq, "completion": completion,
         "pairs": pairs}


def task_rows(cfg: DataConfig, files: str, tokenizer: Tokenizer, num_labels: int, key: str) -> dict:
  """All rows of the examples in `files`, as arrays `{feature: [n, width]}`."""
  return TASKS[cfg.objective](read_examples(files, key, cfg.skip_bad_lines), cfg, tokenizer, num_labels)


def _shuffled_indices(n: int, seed: int) -> tf.data.Dataset:
  """Indices of epoch after epoch, each epoch a seeded permutation of 0..n-1."""

  def index(i):
    epoch, j = i // n, i % n
    key = tf.stack([tf.constant(seed, tf.int64) * 1_000_003 + 0x7461736b, epoch])
    return tf.random.experimental.index_shuffle(j, key, n - 1)

  return tf.data.Dataset.range(np.iinfo(np.int64).max).map(index)


def make_task_dataset(cfg: DataConfig, *, files: str, tokenizer_path: str, batch_size: int, num_labels: int,
                      process_index: int = 0, process_count: int = 1, shuffle: bool = True,
                      repeat: bool = True, seed: int = 0, key: str = "data.train_files",
                      skip_batches: int = 0) -> tf.data.Dataset:
  """This host's batches of task rows: examples i with i % process_count == process_index.
  Training repeats forever in per-epoch permutations; evaluation reads each example once
  and pads the last batch with all-zero rows."""
  rows = task_rows(cfg, files, Tokenizer(tokenizer_path, objectives.sentinels(cfg)), num_labels, key)
  rows = {k: v[process_index::process_count] for k, v in rows.items()}
  n = len(next(iter(rows.values())))
  if n == 0:
    raise DataError(f"{key}={files}: {process_count} processes share fewer examples than that; "
                    "this process has none")
  table = {k: tf.constant(v) for k, v in rows.items()}
  if repeat:
    idx = _shuffled_indices(n, seed) if shuffle else tf.data.Dataset.range(n).repeat()
  else:
    idx = tf.data.Dataset.range(n)
  ds = idx.batch(batch_size, drop_remainder=repeat).map(lambda i: {k: tf.gather(v, i) for k, v in table.items()})
  from t5x_like.data.pipeline import _pad_batch, skip_batches_of, stream_options

  if not repeat:
    ds = ds.map(lambda b: _pad_batch(b, batch_size))
  return skip_batches_of(ds, skip_batches).with_options(stream_options()).prefetch(2)


__all__ = ["TASKS", "label_index", "make_task_dataset", "read_examples", "task_rows"]
