"""tf.data input pipelines: reader (`readers/`, one per source) -> host share -> strata
read side by side, long documents cut (`long_documents.py`) and a shuffle buffer
(`readers/pieces.py`) -> tokenize (in graph) -> objective -> batch; or a weighted mixture
of such streams.

Everything stays in the TensorFlow graph (no `from_generator`, no `py_function`), so
`tf.train.Checkpoint(iterator=it)` saves the exact position, shuffle buffers included, and
a resumed run continues with the next batch. With a fixed seed and host count the stream
of batches is a pure function of the data.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from t5x_like.config import TASK_OBJECTIVES, DataConfig, mixture_components  # noqa: E402
from t5x_like.config.validation import check_objective  # noqa: E402
from t5x_like.data.long_documents import LONG_DOC_BYTES, pieces  # noqa: E402
from t5x_like.data.objectives import OBJECTIVES, objective  # noqa: E402
from t5x_like.data.readers import Share, needs_external_state, reader_for, skipped_lines  # noqa: E402
from t5x_like.data.tokenizer import Tokenizer  # noqa: E402
from t5x_like.errors import DataError  # noqa: E402

TOKENIZE_BATCH = 256  # documents tokenized per call of the in-graph tokenizer


def tokenized_chunks(docs: tf.data.Dataset, tokenizer: Tokenizer, *, num_parallel_calls: int = -1,
                     cut: bool = False) -> tf.data.Dataset:
  """Ragged int32 chunks `[n_docs, (tokens)]` of up to `TOKENIZE_BATCH` documents, EOS
  appended to each. Documents without tokens (blank lines, JSON lines without the field)
  are dropped here, vectorised, rather than by a per-line filter. `cut`: the readers cut
  long documents (training), so plain batches are bounded; otherwise a long document is
  tokenized alone (`_tokenize_batches`)."""
  sp = tokenizer.tf_tokenizer
  eos = tokenizer.eos_id

  def in_pieces(batch):  # long documents: see long_documents.py
    split = pieces(batch)
    ids = sp.tokenize(split.flat_values)
    return tf.RaggedTensor.from_row_splits(ids, split.row_splits, validate=False).merge_dims(1, 2)

  def tokenize(batch):
    long = tf.reduce_any(tf.strings.length(batch) > LONG_DOC_BYTES)
    ids = tf.cond(long, lambda: in_pieces(batch), lambda: sp.tokenize(batch))
    # Drop empty documents through the row lengths alone: they hold no values, and
    # tf.ragged.boolean_mask would copy all of them (0.75 GB more for a 50 MB document).
    lengths = ids.row_lengths()
    ids = tf.RaggedTensor.from_row_lengths(ids.flat_values, tf.boolean_mask(lengths, lengths > 0),
                                           validate=False)
    eos_col = tf.fill([ids.nrows(), 1], tf.constant(eos, tf.int32))
    return tf.concat([ids, eos_col], axis=1)

  calls = tf.data.AUTOTUNE if num_parallel_calls < 0 else max(num_parallel_calls, 1)
  batches = docs.batch(TOKENIZE_BATCH) if cut else _tokenize_batches(docs)
  return batches.map(tokenize, num_parallel_calls=calls, deterministic=True)


def _tokenize_batches(docs: tf.data.Dataset) -> tf.data.Dataset:
  """Documents in batches of TOKENIZE_BATCH, except that one longer than LONG_DOC_BYTES
  makes a batch alone, ahead of the short ones batched so far. A plain batch of long
  documents multiplied everything after it: a training stream that repeats one 3.8 MB line
  put 256 copies in one call (1 GB of text, 0.5G token ids, 12 GB peak before the first
  batch). Without long documents the batches are those of `docs.batch(TOKENIZE_BATCH)`,
  at half its throughput (a function call per document; 1.8M against 3.5M tokens/s in
  scripts/bench_data.py), so only streams that read documents whole use it."""
  return docs.group_by_window(
      key_func=lambda doc: tf.cast(tf.strings.length(doc) > LONG_DOC_BYTES, tf.int64),
      reduce_func=lambda _, window: window.batch(TOKENIZE_BATCH),
      window_size_func=lambda long: tf.where(long > 0, tf.constant(1, tf.int64), TOKENIZE_BATCH))


def _role(cfg: DataConfig, files: str, repeat: bool, split: str) -> str:
  """"train" or "eval": `split` if given; for a file source, which of the config's globs
  `files` is; otherwise training streams (repeat) read the train split."""
  if split:
    return split
  if files and not cfg.mixture and cfg.source != "tfds":
    if files == cfg.eval_files != cfg.train_files:
      return "eval"
    if files == cfg.train_files:
      return "train"
  return "train" if repeat else "eval"


def _blocks(cfg: DataConfig, docs: tf.data.Dataset, tokenizer: Tokenizer, seed: int, cut: bool) -> tf.data.Dataset:
  """Blocks of feature rows `{feature: [n, ...]}` of one stream of documents (`cut`: its
  long documents cut by the reader, as training streams are)."""
  chunks = tokenized_chunks(docs, tokenizer, num_parallel_calls=cfg.num_parallel_calls, cut=cut)
  return objective(cfg.objective)(chunks, cfg, tokenizer=tokenizer, seed=seed)


def _row_spec(blocks: tf.data.Dataset) -> dict:
  return {k: (v.dtype.name, tuple(v.shape[1:])) for k, v in blocks.element_spec.items()}


def _mixed_rows(cfg: DataConfig, role: str, tokenizer: Tokenizer, share: Share) -> tf.data.Dataset:
  """Rows of every `data.mixture` component, each made by its own source and objective,
  drawn at random in proportion to the weights. The draw is seeded (`sample_from_datasets`
  keeps its generator in the iterator state), so the mixed stream is deterministic and
  resumes exactly. Component i shuffles with seed + i."""
  weights, streams, spec0 = [], [], None
  for i, (weight, comp) in enumerate(mixture_components(cfg)):
    check_objective(comp, None, f"data.mixture[{i}]")
    reader = reader_for(comp, f"data.mixture[{i}].")
    seed = share.seed + i
    docs = reader.documents(reader.input_for(role), Share(share.process_index, share.process_count,
                                                          share.shuffle, share.repeat, seed))
    blocks = _blocks(comp, docs, tokenizer, seed, cut=share.shuffle)
    spec = _row_spec(blocks)
    if spec0 is not None and spec != spec0:
      raise DataError(f"data.mixture[{i}] (objective={comp.objective}, seq_len={comp.seq_len}) "
                      f"yields rows {spec} but data.mixture[0] yields {spec0}; every component must "
                      "produce the same features and shapes (one objective family and seq_len)")
    spec0 = spec
    weights.append(weight)
    streams.append(blocks.unbatch())
  total = sum(weights)
  # A finite (eval) component that runs out leaves the others to finish: each document once.
  return tf.data.Dataset.sample_from_datasets(streams, [w / total for w in weights], seed=share.seed,
                                              stop_on_empty_dataset=False)


def _pad_batch(batch: dict, batch_size: int) -> dict:
  """Pads a final short batch with all-zero rows (segment 0, loss weight 0)."""

  def pad(x):
    missing = batch_size - tf.shape(x)[0]
    out = tf.pad(x, tf.concat([[[0, missing]], tf.zeros([x.shape.rank - 1, 2], tf.int32)], 0))
    return tf.ensure_shape(out, [batch_size] + x.shape[1:].as_list())

  return {k: pad(v) for k, v in batch.items()}


def skip_batches_of(ds: tf.data.Dataset, count: int) -> tf.data.Dataset:
  """`ds` past its first `count` batches, through a Skip op even when `count` is 0 (with
  `stream_options`, which keep it): a stream restarted past the tokens already seen (a
  new batch size, `reset_data_iterator`) then saves an iterator of the same layout as any
  other, and the next plain resume restores it. With the Skip only when skipping, that
  resume found a layout it could not take."""
  return ds.skip(count)


def stream_options() -> tf.data.Options:
  """Deterministic, and the no-op Skip of `skip_batches_of` kept (noop elimination off)."""
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.noop_elimination = False
  return options


def make_dataset(data_cfg: DataConfig, *, files: str, tokenizer_path: str, batch_size: int,
                 process_index: int = 0, process_count: int = 1, shuffle: bool = True,
                 repeat: bool = True, seed: int | None = None, split: str = "",
                 skip_batches: int = 0, num_labels: int = 0) -> tf.data.Dataset:
  """Batches `{feature: [batch_size, seq_len]}` for this host; `batch_size` is per host.

  Training (`repeat=True`) streams forever. Evaluation (`repeat=False`) reads each of this
  host's documents once and pads the last batch with all-zero rows, so every batch has the
  same shape and the eval step compiles once.

  `split` ("train" or "eval") picks what TFDS sources and mixtures read; by default
  `files` decides when it is data.train_files or data.eval_files, else training reads the
  train split and evaluation the eval split. File sources read `files` (any glob).
  Batches leave through `readers.data_errors()` to turn a bad record into its DataError.
  `skip_batches` drops that many batches first (a resume past tokens already seen).
  Task objectives (labelled JSON lines, `data/tasks.py`) check labels against `num_labels`.
  """
  cfg = data_cfg
  seed = cfg.seed if seed is None else seed
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must be in [0, {process_count})")
  if split not in ("", "train", "eval"):
    raise ValueError(f"split={split!r} must be 'train' or 'eval'")
  role = _role(cfg, files, repeat, split)
  if cfg.objective in TASK_OBJECTIVES:
    from t5x_like.data import tasks

    return tasks.make_task_dataset(cfg, files=files, tokenizer_path=tokenizer_path, batch_size=batch_size,
                                   num_labels=num_labels, process_index=process_index,
                                   process_count=process_count, shuffle=shuffle, repeat=repeat, seed=seed,
                                   key=f"data.{role}_files", skip_batches=skip_batches)
  if not cfg.mixture:
    check_objective(cfg, None)
  tokenizer = Tokenizer(tokenizer_path)

  # host_split=rows: read the whole stream as one host would, batch globally, keep a slice.
  by_rows = cfg.host_split == "rows" and process_count > 1
  host_batch, slice_index = batch_size, process_index
  if by_rows:
    batch_size, process_index, process_count = batch_size * process_count, 0, 1
  share = Share(process_index, process_count, shuffle, repeat, seed)
  if cfg.mixture:
    ds = _mixed_rows(cfg, role, tokenizer, share).batch(batch_size, drop_remainder=repeat)
  else:
    reader = reader_for(cfg)
    docs = reader.documents(reader.input_for(role, files), share)
    ds = _blocks(cfg, docs, tokenizer, seed, cut=share.shuffle).rebatch(batch_size, drop_remainder=repeat)
  if not repeat:
    ds = ds.map(lambda b: _pad_batch(b, batch_size))
  if by_rows:
    lo = slice_index * host_batch
    ds = ds.map(lambda b: {k: v[lo:lo + host_batch] for k, v in b.items()})
  ds = skip_batches_of(ds, skip_batches)

  options = stream_options()
  if needs_external_state(cfg):
    # The skipped-record counter is a variable, which iterator checkpoints cannot hold;
    # everything that decides the stream is still saved.
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
  # TensorFlow's default thread pool: on 2 cores it gave about twice the throughput of a
  # one-thread pool (scripts/bench_data.py). While training, the pipeline idles once
  # the prefetch buffer is full, so its CPU share is set by the consumer, not the pool.
  return ds.with_options(options).prefetch(2)


__all__ = ["LONG_DOC_BYTES", "OBJECTIVES", "TOKENIZE_BATCH", "make_dataset", "skipped_lines", "tokenized_chunks"]
