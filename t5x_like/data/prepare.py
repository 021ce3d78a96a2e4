"""What a run reads, resolved before training: the train/eval inputs and the tokenizer.
With `data.source=synthetic` the built-in corpus is written and a tokenizer trained on it
(once, by process 0, then every process continues). The tokenizer is checked against the
model's vocabulary here, since that needs the tokenizer itself."""

from __future__ import annotations

import dataclasses
import os

import jax

from t5x_like.config import TASK_OBJECTIVES, Config
from t5x_like.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DataFiles:
  train: str  # glob of training files ("" for TFDS and mixtures: the config says what to read)
  eval: str
  tokenizer: str  # SentencePiece model path


def barrier(name: str) -> None:
  """All processes wait here (no-op in one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def warm_start_tokenizer(init_from: str) -> str:
  """The tokenizer a pretraining run on the built-in corpus left beside its checkpoints
  (WORKDIR/tokenizer/spm.model for init_from=WORKDIR/checkpoints[/STEP]), or ""."""
  path = os.path.abspath(init_from)
  for _ in range(3):
    candidate = os.path.join(path, "tokenizer", "spm.model")
    if os.path.isfile(candidate):
      return candidate
    path = os.path.dirname(path)
  return ""


def _checkpoint_tokenizer(init_from: str) -> str:
  """The tokenizer the warm start's checkpoint was trained with ("" when it names none)."""
  from t5x_like.checkpoint import find_step_dir, read_meta
  from t5x_like.decoding.loading import find_tokenizer

  try:
    step_dir = find_step_dir(init_from, "checkpoint.init_from")
  except ConfigError:  # gone since (an eval of a finished fine-tune), or reported by the restore
    return warm_start_tokenizer(init_from)
  return find_tokenizer(step_dir, read_meta(step_dir)) or warm_start_tokenizer(init_from)


def _same_file(a: str, b: str) -> bool:
  """The same tokenizer model: one path, or byte-identical files."""
  import tensorflow as tf

  if os.path.abspath(a) == os.path.abspath(b):
    return True
  try:
    with tf.io.gfile.GFile(a, "rb") as fa, tf.io.gfile.GFile(b, "rb") as fb:
      return fa.read() == fb.read()
  except (OSError, tf.errors.OpError):
    return True  # a path that cannot be read is reported where the tokenizer is opened


def _builtin_task(cfg: Config, corpus_dir: str, log) -> tuple[str, str]:
  """Writes the built-in task's JSON lines (process 0) and fills in its label names."""
  from t5x_like.data import builtin_tasks

  d = cfg.data
  task = d.synthetic.task or builtin_tasks.DEFAULT_TASK[d.objective]
  names = builtin_tasks.LABELS.get(task, [])
  if names and not d.task.labels:
    d.task.labels = list(names)
  if names and cfg.model.head in ("classify", "tag") and cfg.model.num_labels != len(names):
    raise ConfigError(f"the built-in task {task} has {len(names)} labels {names} but model.num_labels="
                      f"{cfg.model.num_labels}; set --config.model.num_labels={len(names)}")
  paths = {"train": os.path.join(corpus_dir, f"task-{task}-train.jsonl"),
           "eval": os.path.join(corpus_dir, f"task-{task}-eval.jsonl")}
  if jax.process_index() == 0:
    paths = builtin_tasks.write_task(corpus_dir, task, num_train=d.synthetic.task_train_examples,
                                     num_eval=d.synthetic.task_eval_examples, seed=d.seed)
    log(f"[t5x_like] built-in task {task}: {paths['train']}, {paths['eval']}")
  barrier("builtin_task")
  return paths["train"], paths["eval"]


def prepare_data(cfg: Config, workdir: str, log=print) -> DataFiles:
  """Resolves the inputs and the tokenizer; builds the synthetic corpus and trains a
  tokenizer on it when the config asks for the built-in data."""
  from t5x_like.data import objectives, synthetic, tokenizer  # imports TensorFlow

  d = cfg.data
  train, evals, tok_path = d.train_files, d.eval_files, d.tokenizer.path
  pretrained = _checkpoint_tokenizer(cfg.checkpoint.init_from) if cfg.checkpoint.init_from else ""
  if pretrained and tok_path and not _same_file(pretrained, tok_path):
    raise ConfigError(f"data.tokenizer.path={tok_path} is not the tokenizer checkpoint.init_from was trained with "
                      f"({pretrained}): its embeddings would read other pieces; leave data.tokenizer.path unset "
                      "to use the checkpoint's")
  if not tok_path and pretrained:
    tok_path = pretrained
    log(f"[t5x_like] tokenizer of the warm start: {tok_path}")
  if not tok_path and cfg.checkpoint.init_from:
    # Never a new tokenizer under pretrained embeddings: they would read other pieces.
    raise ConfigError(f"checkpoint.init_from={cfg.checkpoint.init_from}: the tokenizer it was trained with is not "
                      "found (its WORKDIR/tokenizer/spm.model is gone, or it is a `convert --from-hf` import, "
                      "which names none); pass that tokenizer as data.tokenizer.path")
  if d.source == "synthetic":
    corpus_dir = d.synthetic.corpus_dir or os.path.join(workdir, "corpus")
    tok_path = tok_path or os.path.join(workdir, "tokenizer", "spm.model")
    if jax.process_index() == 0:
      files = synthetic.write_corpus(corpus_dir, num_train_docs=d.synthetic.train_docs,
                                     num_eval_docs=d.synthetic.eval_docs, seed=d.seed)
      if not os.path.exists(tok_path):
        # Sentinels (T5) and the MLM mask take the last `extra_ids` ids of the model's vocabulary.
        pieces = cfg.model.vocab_size - objectives.sentinels(d)
        log(f"training a SentencePiece tokenizer (vocab {pieces}) -> {tok_path}")
        tokenizer.train_sentencepiece(files["train"], pieces, tok_path, seed=d.seed, model_type="bpe",
                                      hard_vocab_limit=False)
    barrier("prepare_data")
    train, evals = os.path.join(corpus_dir, "train-*.txt"), os.path.join(corpus_dir, "eval-*.txt")
    if d.objective in TASK_OBJECTIVES:
      train, evals = _builtin_task(cfg, corpus_dir, log)
  tok = tokenizer.Tokenizer(tok_path)
  needed = objectives.vocab_needed(tok, d)
  if needed > cfg.model.vocab_size:
    extra = f" + data.tokenizer.extra_ids={d.tokenizer.extra_ids} sentinels" if needed > tok.vocab_size else ""
    raise ConfigError(
        f"tokenizer {tok_path} has {tok.vocab_size} pieces{extra} but model.vocab_size={cfg.model.vocab_size}; "
        f"set --config.model.vocab_size={needed} (or larger)")
  if not evals and cfg.train.eval_batches > 0:
    log("[t5x_like] data.eval_files is empty: evaluation reads the training files, so its figures are not "
        "held out; set data.eval_files for a held-out split")
  return DataFiles(train=train, eval=evals or train, tokenizer=tok_path)


def train_input(cfg: Config, files: DataFiles) -> dict:
  """What the training stream reads, as a checkpoint records it: each file glob's matches
  (name and size: a file added, removed or grown changes the stream its saved position
  belongs to) as a count, a byte total and a digest; {} for TFDS sources."""
  import hashlib

  import tensorflow as tf

  from t5x_like.config.validation import mixture_components
  from t5x_like.data.tokenizer import DataError, list_files

  d = cfg.data
  globs = [c.train_files for _, c in mixture_components(d)] if d.mixture else [files.train]
  if d.source == "tfds" and not d.mixture:
    return {}
  out = {}
  for pattern in globs:
    if not pattern:
      continue
    try:
      paths = list_files(pattern)
    except DataError:
      paths = []  # the pipeline says what is wrong with the glob
    sizes = [tf.io.gfile.stat(p).length for p in paths]
    listing = "".join(f"{os.path.basename(p)}\t{n}\n" for p, n in zip(paths, sizes, strict=True))
    out[pattern] = {"files": len(paths), "bytes": sum(sizes),
                    "digest": hashlib.sha256(listing.encode()).hexdigest()[:16]}
  return out


def input_changes(saved: dict, now: dict) -> list[str]:
  """How the training input differs from a checkpoint's (`train_input` of both), by glob,
  matched in order, in file names and sizes. (A changed glob is a config change of its own,
  and the saved iterator names its files by path: a moved directory does not restore.)"""
  changes = []
  for (glob, old), new in zip(saved.items(), now.values(), strict=False):
    if old.get("digest") != new.get("digest"):
      changes.append(f"{glob}: {old.get('files')} files, {old.get('bytes'):,} bytes then, {new.get('files')} "
                     f"files, {new.get('bytes'):,} bytes now" if old.get("bytes") is not None else glob)
  return changes
