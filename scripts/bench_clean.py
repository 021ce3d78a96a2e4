"""Measures `t5x-like data clean`: each stage alone on one core, then the whole run with
the process pool (1 worker and all cores); and the near-duplicate threshold's effect on
planted near copies.

  python scripts/bench_clean.py                     # generates ~100 MB of noisy JSONL in a temp dir
  python scripts/bench_clean.py --mb 20 --stage-mb 10
  python scripts/bench_clean.py --input 'dump/*.jsonl'
  python scripts/bench_clean.py --near-dup-only     # the threshold table only

The generated corpus is web-like on purpose, so every stage has work: prose documents of
50-600 words, about 10% wrapped in HTML with scripts and entities, 10% with URLs and
e-mail addresses, 5% menus of repeated lines, 5% too short, 5% exact and 5% near copies
(1-3 word edits) of earlier documents, 1% with phone numbers, 0.5% with invalid UTF-8.
Stages are timed on the first --stage-mb MB; docs/s and MB/s count input documents and
input bytes (what the stage is handed).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from t5x_like.data.clean import dedup, document, minhash, normalize, pii, quality  # noqa: E402
from t5x_like.data.clean.options import CleanOptions  # noqa: E402
from t5x_like.data.clean.run import clean  # noqa: E402

_COMMON = ("the of and to in is that it was for on are with as his they be at one have this from "
           "or had by not but what some we can out other were all there when up use your how said "
           "an each she which do their time if will way about many then them would write like so "
           "these her long make thing see him two has look more day could go come did number sound "
           "no most people my over know water than call first who may down side been now find").split()


def _vocab(rng: random.Random, n: int = 5000) -> list[str]:
  syl = ("ka", "to", "ri", "ne", "mu", "sa", "lo", "pe", "di", "va", "ber", "ston", "mal", "tion", "er")
  return sorted({"".join(rng.choice(syl) for _ in range(rng.randint(1, 4))) for _ in range(n)})


def _prose(rng: random.Random, vocab: list[str], words: int) -> str:
  out, sentence = [], []
  for _ in range(words):
    sentence.append(rng.choice(_COMMON) if rng.random() < 0.45 else rng.choice(vocab))
    if len(sentence) >= rng.randint(8, 20):
      out.append(" ".join(sentence).capitalize() + ".")
      sentence = []
  if sentence:
    out.append(" ".join(sentence).capitalize() + ".")
  return " ".join(out)


def near_copy(rng: random.Random, text: str, vocab: list[str], edits: int) -> str:
  words = text.split()
  for _ in range(edits):
    i = rng.randrange(len(words))
    kind = rng.random()
    if kind < 0.4:
      words[i] = rng.choice(vocab)
    elif kind < 0.7 and len(words) > 1:
      del words[i]
    else:
      words.insert(i, rng.choice(vocab))
  return " ".join(words)


def generate(path: str, mb: float, seed: int = 0) -> int:
  """Writes about `mb` MB of noisy JSONL; returns the number of documents."""
  rng = random.Random(seed)
  vocab = _vocab(rng)
  recent: list[str] = []
  size, n = 0, 0
  with open(path, "wb") as f:
    while size < mb * 1e6:
      r = rng.random()
      if r < 0.05 and recent:
        text = rng.choice(recent)
      elif r < 0.10 and recent:
        text = near_copy(rng, rng.choice(recent), vocab, rng.randint(1, 3))
      elif r < 0.15:
        text = _prose(rng, vocab, rng.randint(5, 40))
      elif r < 0.20:
        menu = [f"{w.capitalize()} | Home | Contact" for w in rng.sample(vocab, 3)]
        text = "\n".join(menu * 6 + [_prose(rng, vocab, 60)])
      else:
        text = _prose(rng, vocab, rng.randint(50, 600))
        recent = (recent + [text])[-500:]
      r = rng.random()
      if r < 0.10:
        text = (f"<html><head><title>{rng.choice(vocab)}</title><script>var a = 1 < 2;</script></head>"
                f"<body><div class=\"x\"><p>{text.replace('. ', '.</p><p>', 3)}</p> &copy; 2024 &amp; "
                f"more</div></body></html>")
      elif r < 0.20:
        text += f" See https://{rng.choice(vocab)}.example.com/{rng.choice(vocab)}?id={n} or mail {rng.choice(vocab)}@example.org."
      elif r < 0.21:
        text += f" Call +44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}."
      line = json.dumps({"text": text, "url": f"https://site{rng.randint(0, 50)}.example/{n}"}).encode() + b"\n"
      if rng.random() < 0.005:
        line = line.replace(b"the ", b"th\xe9 ", 1)
      f.write(line)
      size += len(line)
      n += 1
  return n


def _stage_times(path: str, stage_mb: float) -> list[tuple[str, int, int, float]]:
  """(stage, documents, bytes, seconds) for each stage alone, on one core."""
  o = CleanOptions()
  raws = []
  with open(path, "rb") as f:
    total = 0
    for line in f:
      raws.append(line.rstrip(b"\n"))
      total += len(line)
      if total >= stage_mb * 1e6:
        break
  rows = []

  def timed(name, fn, items):
    start = time.perf_counter()
    out = [fn(x) for x in items]
    rows.append((name, len(items), sum(len(x.encode() if isinstance(x, str) else x) for x in items),
                 time.perf_counter() - start))
    return out

  texts = timed("read (JSON, UTF-8)", lambda r: document._record(r, "jsonl", "text", "drop")[1], raws)
  texts = [t for t in texts if t is not None]
  texts = timed("normalize", normalize.normalize, texts)
  texts = timed("markup (HTML, URLs, e-mail, symbols)",
                lambda t: normalize.normalize(document._markup(t, o)), texts)
  timed("pii (masking, when on)", pii.mask_pii, texts)
  failed = timed("quality filters", lambda t: quality.failed_filter(t, o), texts)
  texts = [t for t, why in zip(texts, failed, strict=True) if why is None]
  timed("exact hash", dedup.content_hash, texts)
  sigs = timed("minhash signature", lambda t: minhash.signature(t, o.shingle, o.num_perm, o.seed).tobytes(), texts)
  start = time.perf_counter()
  dedup.near_duplicates([((0, i), s) for i, s in enumerate(sigs)], o.jaccard, o.num_perm)
  rows.append(("LSH buckets + compare", len(sigs), sum(len(t.encode()) for t in texts), time.perf_counter() - start))
  return rows


def near_dup_table(seed: int = 0, n_distinct: int = 2000, n_copies: int = 1000) -> None:
  """Recall on planted copies (light: 1-3 word edits, heavy: 4-15) and false positives on
  distinct documents (200-word prose sharing a vocabulary and common words) per threshold."""
  rng = random.Random(seed)
  vocab = _vocab(rng)
  docs = [_prose(rng, vocab, 200) for _ in range(n_distinct)]
  light, heavy = set(), set()
  for i in range(n_copies):
    edits = rng.randint(1, 3) if i % 2 == 0 else rng.randint(4, 15)
    (light if i % 2 == 0 else heavy).add(len(docs))
    docs.append(near_copy(rng, rng.choice(docs[:n_distinct]), vocab, edits))
  o = CleanOptions()
  sigs = [((0, i), minhash.signature(d, o.shingle, o.num_perm, o.seed).tobytes()) for i, d in enumerate(docs)]
  print(f"\nnear duplicates: {n_distinct} distinct 200-word documents, {len(light)} copies with 1-3 word "
        f"edits, {len(heavy)} with 4-15 (shingles of {o.shingle} words, {o.num_perm} permutations)")
  print(f"{'jaccard':>8} {'bands x rows':>13} {'recall 1-3':>11} {'recall 4-15':>12} {'false pos.':>11}")
  for t in (0.5, 0.6, 0.7, 0.8, 0.9):
    gone = {k[1] for k in dedup.near_duplicates(sigs, t, o.num_perm)}
    b, r = minhash.bands(t, o.num_perm)
    print(f"{t:>8} {f'{b} x {r}':>13} {100 * len(gone & light) / len(light):>10.1f}% "
          f"{100 * len(gone & heavy) / len(heavy):>11.1f}% {100 * len(gone - light - heavy) / n_distinct:>10.2f}%")


def _cpu_seconds() -> float:
  """User + system time of this process and its finished children (the pool's workers):
  on a machine shared with other jobs, wall-clock rates say as much about them as about us."""
  import resource
  own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--input", default="", help="JSONL glob to measure (default: generate --mb MB)")
  ap.add_argument("--mb", type=float, default=100)
  ap.add_argument("--stage-mb", type=float, default=20, help="MB timed per stage (one core)")
  ap.add_argument("--near-dup-only", action="store_true")
  args = ap.parse_args()
  if args.near_dup_only:
    near_dup_table()
    return
  tmp = tempfile.mkdtemp(prefix="bench_clean_")
  if args.input:
    paths = sorted(glob.glob(args.input))
  else:
    paths = [os.path.join(tmp, "raw.jsonl")]
    start = time.time()
    n = generate(paths[0], args.mb)
    print(f"generated {n:,} documents, {os.path.getsize(paths[0]) / 1e6:.1f} MB in {time.time() - start:.0f} s")
  size = sum(os.path.getsize(p) for p in paths)
  print(f"\nstages alone, one core, first {args.stage_mb} MB:")
  print(f"{'stage':<38}{'docs/s':>10}{'MB/s':>8}")
  for name, docs, nbytes, secs in _stage_times(paths[0], args.stage_mb):
    print(f"{name:<38}{docs / secs:>10,.0f}{nbytes / 1e6 / secs:>8.2f}")
  print(f"\nwhole run, {size / 1e6:.1f} MB ({os.cpu_count()} cores here, load average "
        f"{os.getloadavg()[0]:.1f} before it):")
  for workers in (1, os.cpu_count() or 1):
    start, cpu = time.time(), _cpu_seconds()
    rep = clean(paths, os.path.join(tmp, f"out{workers}"), CleanOptions(), workers=workers)
    secs, cpu = time.time() - start, _cpu_seconds() - cpu
    print(f"  {workers} worker(s): {secs:.1f} s, {rep['input_docs'] / secs:,.0f} docs/s, "
          f"{size / 1e6 / secs:.2f} MB/s ({cpu:.0f} CPU s: {size / 1e6 / cpu:.2f} MB per CPU s); "
          f"kept {rep['kept_docs']:,} of {rep['input_docs']:,} documents")
    if workers == 1 and (os.cpu_count() or 1) == 1:
      break
  print("\nremoved per stage (whole run):")
  for stage, s in rep["stages"].items():
    print(f"  {stage:<18}{s['docs_removed']:>9,} docs {s['chars_removed']:>14,} chars")
  near_dup_table()


if __name__ == "__main__":
  main()
