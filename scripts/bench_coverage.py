"""Coverage of the training order: on one in-order text file, which parts of the file the
first documents drawn come from (what a shuffle buffer alone gets wrong).

  python scripts/bench_coverage.py                  # 78,133 numbered documents, like the manual
  python scripts/bench_coverage.py --docs 200000 --first 5000 --seen 19000

Prints the documents per tenth of the file among the first `--first` drawn (uniform is
first/10 each) and per quarter among the first `--seen` (the issue's figure: 600 steps of
8 x 256 tokens drew about 35k paragraphs), then the reader's documents/s over one epoch.
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--docs", type=int, default=78_133)
  parser.add_argument("--first", type=int, default=5_000)
  parser.add_argument("--seen", type=int, default=35_447)
  parser.add_argument("--shuffle-buffer", type=int, default=10_000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  from t5x_like import config as C
  from t5x_like.data import readers

  path = os.path.join(tempfile.mkdtemp(prefix="bench_coverage_"), "in_order.txt")
  with open(path, "w") as f:  # numbered paragraphs of a few words, in file order
    f.writelines(f"{i:07d} section text of paragraph {i % 97} .\n" for i in range(args.docs))
  cfg = C.replace(C.Config(), data=dict(source="text", train_files=path, shuffle_buffer=args.shuffle_buffer)).data
  reader = readers.reader_for(cfg)

  def stream(repeat):
    docs = reader.documents(reader.input_for("train"), readers.Share(0, 1, True, repeat, args.seed))
    return (int(x[:7]) for batch in docs.batch(4096).as_numpy_iterator() for x in batch)

  drawn = stream(True)
  first = [next(drawn) for _ in range(args.first)]
  seen = first + [next(drawn) for _ in range(args.seen - args.first)]
  tenths = collections.Counter(i * 10 // args.docs for i in first)
  quarters = collections.Counter(i * 4 // args.docs for i in seen)
  worst = max(abs(tenths[k] / (args.first / 10) - 1) for k in range(10))
  print(f"{args.docs} documents in order, shuffle buffer {args.shuffle_buffer}, seed {args.seed}")
  print(f"first {args.first} per tenth: {[tenths[k] for k in range(10)]} (worst {worst:.0%} off uniform)")
  print(f"first {args.seen} per quarter: {[quarters[k] for k in range(4)]}; furthest line {max(seen) + 1}")
  t0 = time.perf_counter()
  n = sum(1 for _ in stream(False))
  print(f"one epoch: {n} documents in {time.perf_counter() - t0:.1f} s ({n / (time.perf_counter() - t0):,.0f}/s)")


if __name__ == "__main__":
  main()
