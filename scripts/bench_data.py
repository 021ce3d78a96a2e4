"""Measures the causal-LM input pipeline alone: text files -> tokens -> packed batches.

  python scripts/bench_data.py                      # builds a synthetic corpus in a temp dir
  python scripts/bench_data.py --files 'data/*.txt' --tokenizer spm.model
  python scripts/bench_data.py --files 'data/*.jsonl' --source jsonl --tokenizer spm.model

Prints tokens/s (batch x seq_len per batch, padding included; the training stream has
none) after a warm-up that fills the shuffle buffer.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def measure(ds, seconds: float, warmup_batches: int) -> tuple[float, int]:
  it = iter(ds)
  for _ in range(warmup_batches):
    next(it)
  n_tokens, n_batches, t0 = 0, 0, time.perf_counter()
  while time.perf_counter() - t0 < seconds:
    batch = next(it)
    n_tokens += int(batch["decoder_target_tokens"].shape.num_elements())
    n_batches += 1
  return n_tokens / (time.perf_counter() - t0), n_batches


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--files", default="", help="glob of text files; default: synthetic corpus")
  parser.add_argument("--source", default="text", choices=["text", "jsonl"],
                      help="jsonl reads the 'text' field of each line")
  parser.add_argument("--tokenizer", default="", help="SentencePiece .model; default: train one")
  parser.add_argument("--vocab-size", type=int, default=512)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--seq-lens", default="128,512")
  parser.add_argument("--seconds", type=float, default=5.0)
  parser.add_argument("--warmup-batches", type=int, default=50)
  parser.add_argument("--train-docs", type=int, default=200_000)
  args = parser.parse_args()

  from t5x_like.config import DataConfig  # noqa: PLC0415 - after the TF log level is set
  from t5x_like.data import pipeline, synthetic, tokenizer  # noqa: PLC0415

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
  print(f"files {files} | tokenizer {tok_path} ({tok.vocab_size} pieces) | {os.cpu_count()} CPUs")
  for seq_len in (int(s) for s in args.seq_lens.split(",")):
    cfg = DataConfig(source=args.source, train_files=files, tokenizer_path=tok_path,
                     seq_len=seq_len)
    ds = pipeline.make_dataset(cfg, files=files, tokenizer_path=tok_path,
                               batch_size=args.batch_size)
    rate, n = measure(ds, args.seconds, args.warmup_batches)
    print(f"causal_lm batch {args.batch_size} x seq {seq_len}: {rate:,.0f} tokens/s "
          f"({n} batches in {args.seconds:.0f} s)")


if __name__ == "__main__":
  main()
