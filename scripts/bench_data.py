"""Measures the input pipeline alone: every objective in OBJECTIVES on text files, then
causal LM from each source (text, JSONL, TFRecord, TFDS) holding the same documents.

  python scripts/bench_data.py                      # builds a synthetic corpus in a temp dir
  python scripts/bench_data.py --files 'data/*.txt' --tokenizer spm.model
  python scripts/bench_data.py --objectives causal_lm --sources text,tfds --seq-lens 512

Prints token slots/s (batch x input length, padding included: the model computes on
those) and real tokens/s (segment id > 0) after a warm-up that fills the shuffle buffer.
For encoder and encoder-decoder objectives the input length is the encoder's. The
TFRecord and TFDS copies of the documents are written to a temp dir first (not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def measure(ds, seconds: float, warmup_batches: int) -> tuple[float, float, int]:
  """(token slots/s, real tokens/s, batches) of a batch stream."""
  from t5x_like import features
  it = iter(ds)
  for _ in range(warmup_batches):
    next(it)
  slots = real = n_batches = 0
  t0 = time.perf_counter()
  while time.perf_counter() - t0 < seconds:
    batch = next(it)
    # The side the model reads first: the encoder's when there is one.
    side = features.ENCODER if features.ENCODER_INPUT_TOKENS in batch else features.DECODER
    slots += int(batch[side.input_tokens].shape.num_elements())
    real += int((batch[side.segment_ids].numpy() > 0).sum())
    n_batches += 1
  dt = time.perf_counter() - t0
  return slots / dt, real / dt, n_batches


def _read_docs(files: str, source: str) -> list[str]:
  from t5x_like.data.tokenizer import list_files

  docs = []
  for path in list_files(files):
    with open(path, encoding="utf-8") as f:
      for line in f:
        text = json.loads(line).get("text", "") if source == "jsonl" and line.strip() else line.strip()
        if text:
          docs.append(text)
  return docs


def write_copies(files: str, source: str, tmp: str, shards: int = 4) -> dict:
  """The documents of `files` as TFRecord shards and as a TFDS dataset: {source: where}."""
  import tensorflow as tf

  from t5x_like.data.build import build_tfds

  docs = _read_docs(files, source)
  os.makedirs(os.path.join(tmp, "tfrecord"))
  for i in range(shards):
    with tf.io.TFRecordWriter(os.path.join(tmp, "tfrecord", f"part-{i}.tfrecord")) as w:
      for doc in docs[i::shards]:
        feature = {"text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[doc.encode()]))}
        w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
  text_copy = os.path.join(tmp, "docs.txt")
  with open(text_copy, "w", encoding="utf-8") as f:
    f.write("\n".join(docs) + "\n")
  build_tfds(text_copy, "bench_docs", os.path.join(tmp, "tfds"), validation_fraction=0.01)
  return {"tfrecord": os.path.join(tmp, "tfrecord", "*.tfrecord"), "tfds": os.path.join(tmp, "tfds")}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--files", default="", help="glob of text files; default: synthetic corpus")
  parser.add_argument("--source", default="text", choices=["text", "jsonl"],
                      help="format of --files (jsonl reads the 'text' field of each line)")
  parser.add_argument("--tokenizer", default="", help="SentencePiece .model; default: train one")
  parser.add_argument("--vocab-size", type=int, default=512)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--seq-lens", default="128,512")
  parser.add_argument("--objectives", default="", help="comma-separated; default: all of OBJECTIVES")
  parser.add_argument("--sources", default="text,jsonl,tfrecord,tfds",
                      help="sources compared with causal_lm ('' skips them)")
  parser.add_argument("--seconds", type=float, default=5.0)
  parser.add_argument("--warmup-batches", type=int, default=50)
  parser.add_argument("--train-docs", type=int, default=200_000)
  args = parser.parse_args()

  from t5x_like import config as C  # after the TF log level is set
  from t5x_like.data import pipeline, synthetic, tokenizer
  from t5x_like.data.objectives import OBJECTIVES

  tmp = tempfile.mkdtemp(prefix="bench_data_")
  files = args.files
  if not files:
    files = synthetic.write_corpus(os.path.join(tmp, "corpus"), num_train_docs=args.train_docs,
                                   num_eval_docs=100)["train"]
  tok_path = args.tokenizer
  if not tok_path:
    tok_path = tokenizer.train_sentencepiece(files, args.vocab_size, os.path.join(tmp, "spm.model"),
                                             max_bytes=20_000_000, hard_vocab_limit=False)
  tok = tokenizer.Tokenizer(tok_path)
  seq_lens = [int(s) for s in args.seq_lens.split(",")]
  print(f"files {files} | tokenizer {tok_path} ({tok.vocab_size} pieces) | {os.cpu_count()} CPUs | "
        f"batch {args.batch_size}")

  def run(label: str, seq_len: int, **fields) -> None:
    cfg = C.replace(C.Config(), data=dict(tokenizer_path=tok_path, seq_len=seq_len, **fields)).data
    ds = pipeline.make_dataset(cfg, files=fields.get("train_files", ""), tokenizer_path=tok_path,
                               batch_size=args.batch_size, split="train")
    slots, real, n = measure(ds, args.seconds, args.warmup_batches)
    print(f"{label:<24} seq {seq_len:>4}: {slots:>12,.0f} token slots/s {real:>12,.0f} real tokens/s "
          f"({n} batches in {args.seconds:.0f} s)", flush=True)

  objectives = [o for o in args.objectives.split(",") if o] or list(OBJECTIVES)
  print(f"objectives ({args.source} source):")
  for objective in objectives:
    for seq_len in seq_lens:
      run(objective, seq_len, source=args.source, train_files=files, objective=objective)

  sources = [s for s in args.sources.split(",") if s]
  if sources:
    copies = write_copies(files, args.source, tmp) if {"tfrecord", "tfds"} & set(sources) else {}
    jsonl = os.path.join(tmp, "docs.jsonl")
    if "jsonl" in sources:
      with open(jsonl, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(_read_docs(files, args.source)))
    print("sources (causal_lm, the same documents):")
    where = {"text": dict(train_files=files) if args.source == "text" else None,
             "jsonl": dict(train_files=jsonl),
             "tfrecord": dict(train_files=copies.get("tfrecord", "")),
             "tfds": dict(tfds_name="bench_docs", tfds_data_dir=copies.get("tfds", ""))}
    for source in sources:
      if where.get(source) is None:
        continue
      for seq_len in seq_lens:
        run(source, seq_len, source=source, **where[source])


if __name__ == "__main__":
  main()
