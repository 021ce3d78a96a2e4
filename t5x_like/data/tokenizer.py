"""SentencePiece: training a model, and a Python wrapper with the in-graph tokenizer.

Special ids follow T5: pad 0 (also the decoder's start token), eos 1, unk 2, no bos.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import shutil
import socket
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import sentencepiece as spm  # noqa: E402
import tensorflow as tf  # noqa: E402

from t5x_like.data import json_lines  # noqa: E402
from t5x_like.errors import DataError  # noqa: E402

try:  # TensorFlow must never take the accelerators JAX uses.
  tf.config.set_visible_devices([], "GPU")
except (RuntimeError, ValueError):  # devices already initialised: nothing left to hide
  pass

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
MAX_LINE_BYTES = 1 << 16  # SentencePiece skips longer training lines (its default is 4192)


def list_files(pattern: str, config_key: str = "") -> list[str]:
  """Sorted files matching a glob (local or any tf.io.gfile filesystem) or a DataError."""
  files = sorted(tf.io.gfile.glob(pattern)) if pattern else []
  files = [f for f in files if not tf.io.gfile.isdir(f)]
  if not files:
    where = f" (set by {config_key})" if config_key else ""
    if pattern and tf.io.gfile.isdir(pattern):
      raise DataError(f"{pattern!r}{where} is a directory; name its files with a glob, e.g. "
                      f"{os.path.join(pattern, '*.txt')!r}")
    raise DataError(f"no files match {pattern!r}{where}; check the path or glob")
  return files


def _sample_lines(files: list[str], max_bytes: int, seed: int, out, field: str = "text") -> tuple[int, int]:
  """Writes non-empty lines to `out`: all of them when they fit in `max_bytes`, else each
  kept with probability max_bytes / total so the sample spans every file. Deterministic.
  Lines of .jsonl/.json files contribute their string `field` (what `data clean` writes);
  other JSONL lines are passed over."""
  total = sum(tf.io.gfile.stat(p).length for p in files)
  keep = 1.0 if total <= max_bytes else max_bytes / total
  rng = random.Random(seed)
  used = n_lines = 0
  for path in files:
    with tf.io.gfile.GFile(path, "rb") as f:
      for raw in f:
        if keep < 1.0 and rng.random() >= keep:
          continue
        line = raw.decode("utf-8", errors="replace").strip()
        if path.endswith((".jsonl", ".json")):
          line = _jsonl_text(line, field)
        if not line or used + len(raw) > max_bytes:
          continue
        for part in _short_lines(line):
          out.write(part + "\n")
          n_lines += 1
        used += len(raw)
  return used, n_lines


def _short_lines(line: str, limit: int = MAX_LINE_BYTES - 1) -> list[str]:
  """`line` in parts SentencePiece's trainer keeps (it drops longer lines without a word,
  and training cuts no document short): cut at spaces, where no piece crosses anyway."""
  if len(line) * 4 <= limit or len(line.encode("utf-8")) <= limit:
    return [line]
  parts, i, width = [], 0, limit // 4  # characters: at most 4 bytes each
  while i < len(line):
    j = min(i + width, len(line))
    if j < len(line):
      space = line.rfind(" ", i, j)
      j = space if space > i else j
    if line[i:j].strip():
      parts.append(line[i:j].strip())
    i = j
  return parts


def _jsonl_text(line: str, field: str) -> str:
  try:
    record = json_lines.loads(line)
  except ValueError:
    return ""
  value = record.get(field) if isinstance(record, dict) else None
  return value.strip() if isinstance(value, str) else ""


def _vocab_error(msg: str, vocab_size: int, input_glob: str, used: int) -> DataError | None:
  """Turns SentencePiece's vocabulary-size failures into a message with the value to use."""
  high = re.search(r"Vocabulary size too high \((\d+)\).*<= (\d+)", msg)
  if high:
    return DataError(f"vocab_size={vocab_size} is too large for the text in {input_glob!r} "
                     f"({used:,} bytes); lower it to at most {high.group(2)} or add more text")
  low = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", msg)
  if low:
    return DataError(f"vocab_size={vocab_size} is too small for the distinct characters in "
                     f"{input_glob!r} (plus byte fallback pieces); raise it to at least "
                     f"{low.group(2)}, or leave the rarest characters to byte pieces with "
                     f"--character-coverage 0.9995")
  return None


WORK_PREFIX = ".spm-train-"  # + host-pid-: the sample a training works on, beside the model


def _remove_stale_work(directory: str) -> None:
  """Work folders of trainings on this host whose process is gone (stopped at start-up, or
  killed): their samples are as large as --max-bytes."""
  mine = f"{WORK_PREFIX}{socket.gethostname()}-"
  for name in os.listdir(directory):
    pid = name[len(mine):].split("-")[0]
    if not (name.startswith(mine) and pid.isdigit()):
      continue
    try:
      os.kill(int(pid), 0)
    except ProcessLookupError:
      shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    except OSError:
      pass  # alive (another user's): left alone


def train_sentencepiece(input_glob: str, vocab_size: int, output_path: str, *,
                        model_type: str = "unigram", byte_fallback: bool = True,
                        user_defined_symbols: tuple = (), max_bytes: int = 100_000_000,
                        seed: int = 0, split_digits: bool = True,
                        hard_vocab_limit: bool = True, field: str = "text",
                        character_coverage: float = 1.0) -> str:
  """Trains a SentencePiece model on a sample of the files; writes it and a JSON card.

  The `.model` appears atomically (renamed into place), so a crash never leaves a
  truncated model for the next run to load. JSONL files (.jsonl, .json) give their
  `field`. With `hard_vocab_limit=False` a corpus with
  too few distinct pieces gives a smaller vocabulary instead of an error; the card
  records the real size.
  """
  if os.path.isdir(output_path):
    raise DataError(f"--output {output_path} is a directory; name the model file, e.g. "
                    f"{os.path.join(output_path, 'spm.model')}")
  from t5x_like.data.clean.inputs import Unit, probe

  files, skipped = [], []
  for path in list_files(input_glob):
    why = probe(Unit("file", path))  # binary, UTF-16 or whitespace only: no text to learn from
    (skipped.append(f"{path} ({why})") if why else files.append(path))
  if not files:
    raise DataError(f"the {len(skipped)} files matching {input_glob!r} contain no text: {'; '.join(skipped[:4])}")
  out_dir = os.path.dirname(os.path.abspath(output_path))
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    raise DataError(f"cannot create {out_dir} for the tokenizer model: {e.strerror or e}") from None
  _remove_stale_work(out_dir)
  with tempfile.TemporaryDirectory(dir=out_dir, prefix=f"{WORK_PREFIX}{socket.gethostname()}-{os.getpid()}-") as tmp:
    sample = os.path.join(tmp, "sample.txt")
    with open(sample, "w", encoding="utf-8") as f:
      used, n_lines = _sample_lines(files, max_bytes, seed, f, field)
    if n_lines == 0:
      jsonl = any(p.endswith((".jsonl", ".json")) for p in files)
      raise DataError(f"the {len(files)} files matching {input_glob!r} contain no text"
                      + (f" (JSONL records are read for their string field {field!r}: name another with "
                         f"--field)" if jsonl else ""))
    prefix = os.path.join(tmp, "spm")
    try:
      spm.SentencePieceTrainer.train(
          input=sample, model_prefix=prefix, vocab_size=vocab_size, model_type=model_type,
          pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1, byte_fallback=byte_fallback,
          split_digits=split_digits, user_defined_symbols=list(user_defined_symbols),
          hard_vocab_limit=hard_vocab_limit, character_coverage=character_coverage,
          max_sentence_length=MAX_LINE_BYTES, input_sentence_size=0,
          num_threads=os.cpu_count() or 1, minloglevel=2)
    except RuntimeError as e:
      raise (_vocab_error(str(e), vocab_size, input_glob, used)
             or DataError(f"SentencePiece training on {input_glob!r} failed: {e}")) from e
    os.replace(prefix + ".model", output_path)

  tok = Tokenizer(output_path)
  card = {"vocab_size": tok.vocab_size, "requested_vocab_size": vocab_size,
          "model_type": model_type, "pad_id": tok.pad_id, "eos_id": tok.eos_id,
          "unk_id": tok.unk_id, "bos_id": None, "byte_fallback": byte_fallback,
          "split_digits": split_digits, "user_defined_symbols": list(user_defined_symbols),
          "input_glob": input_glob, "num_files": len(files), "bytes_used": used,
          "lines_used": n_lines, "max_bytes": max_bytes, "seed": seed, "skipped_files": skipped,
          "character_coverage": character_coverage}
  card_path = card_path_for(output_path)
  with open(card_path + ".tmp", "w") as f:
    json.dump(card, f, indent=2)
  os.replace(card_path + ".tmp", card_path)
  return output_path


def card_path_for(model_path: str) -> str:
  root, ext = os.path.splitext(model_path)
  return (root if ext == ".model" else model_path) + ".json"


SENTINEL = re.compile(r"<extra_id_(\d+)>")


class Tokenizer:
  """A SentencePiece model: Python encode/decode and the same model as a TF op.

  With `extra_ids` > 0 the model is T5's: sentinel N is id `vocab_size + extra_ids - 1 - N`
  (past the pieces, as the span-corruption objective numbers them), and `encode` and
  `decode` read and write it as the text "<extra_id_N>", as Hugging Face's T5 tokenizer
  does. Documents for pretraining go through the TF op, which keeps such text literal."""

  def __init__(self, path: str, extra_ids: int = 0):
    if not path or not tf.io.gfile.exists(path):
      raise DataError(f"tokenizer model {path!r} not found; train one with "
                      "`t5x-like tokenizer train`")
    with tf.io.gfile.GFile(path, "rb") as f:
      self.model_bytes = f.read()
    self.path = path
    self.sp = spm.SentencePieceProcessor()
    try:
      self.sp.LoadFromSerializedProto(self.model_bytes)
    except RuntimeError as e:
      raise DataError(f"tokenizer model {path!r} is not a valid SentencePiece model; retrain "
                      "it with `t5x-like tokenizer train`") from e
    self.vocab_size = self.sp.GetPieceSize()
    self.pad_id, self.eos_id, self.unk_id = self.sp.pad_id(), self.sp.eos_id(), self.sp.unk_id()
    if self.eos_id < 0:
      raise DataError(f"tokenizer model {path!r} has no EOS piece, which every document needs; "
                      "retrain it with `t5x-like tokenizer train`")
    self.extra_ids = extra_ids
    self.sentinel_base = self.vocab_size + extra_ids  # one past sentinel 0

  def encode(self, text: str) -> list[int]:
    """Ids of `text`, without EOS; "<extra_id_N>" is sentinel N when the model has sentinels.
    Through the TF op the input pipeline uses: Python's SentencePiece (0.2.3) picks other
    pieces than the op's for some text (runs of punctuation in code, about 3% of lines of
    Python sources), and prompts must be cut as the model's training data was."""
    if not self.extra_ids or "<extra_id_" not in text:
      return self._ids(text)
    ids, parts = [], SENTINEL.split(text)  # text, sentinel number, text, ...
    for k, part in enumerate(parts):
      if k % 2 == 0:
        ids += self._ids(part.strip()) if part.strip() else []
      elif int(part) < self.extra_ids:
        ids.append(self.sentinel_base - 1 - int(part))
      else:
        raise DataError(f"<extra_id_{part}> in {text[:80]!r}: the model has {self.extra_ids} sentinels "
                        f"(<extra_id_0> to <extra_id_{self.extra_ids - 1}>, data.tokenizer.extra_ids)")
    return ids

  def _ids(self, text: str) -> list[int]:
    return self.tf_tokenizer.tokenize(tf.constant([text])).to_list()[0] if text else []

  def decode(self, ids) -> str:
    """Text of `ids` up to the first EOS; pad (0, also the decoder's start token) is skipped.
    Ids past the pieces are written "<extra_id_N>" (sentinels) or "<id_I>" (other padding
    of the model's vocabulary), between the decoded runs of pieces."""
    out, run = [], []
    for i in np.asarray(ids).reshape(-1).tolist() + [None]:
      if i == self.eos_id:
        break
      if i is not None and 0 <= i < self.vocab_size:
        if i not in (PAD_ID, self.pad_id):
          run.append(i)
        continue
      if run:
        out.append(self.sp.DecodeIds(run))
        run = []
      if i is not None:
        n = self.sentinel_base - 1 - i
        out.append(f"<extra_id_{n}>" if 0 <= n < self.extra_ids else f"<id_{i}>")
    if run:
      out.append(self.sp.DecodeIds(run))
    return " ".join(p for p in out if p)

  def piece(self, i: int) -> str:
    return self.sp.IdToPiece(int(i))

  @functools.cached_property
  def tf_tokenizer(self):
    """`tensorflow_text.SentencepieceTokenizer` over the same model bytes (int32 ids, no EOS)."""
    import tensorflow_text as tf_text  # registers custom ops; only when needed

    return tf_text.SentencepieceTokenizer(model=self.model_bytes, out_type=tf.int32)


__all__ = ["EOS_ID", "PAD_ID", "UNK_ID", "DataError", "Tokenizer", "card_path_for", "list_files",
           "train_sentencepiece"]
