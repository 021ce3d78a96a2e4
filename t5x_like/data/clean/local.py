"""The one-machine engine: a process pool cleans batches of documents (all cores by
default), then this process removes duplicates and writes the shards.

It holds the surviving documents' JSONL lines and signatures in memory until the dedup
decisions are made (about 1.3x the surviving text); corpora beyond this machine's memory
go through Beam (`--runner`).
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import signal

from t5x_like.data.clean import dedup, document, inputs, output
from t5x_like.data.clean.options import CleanOptions

_BATCH_DOCS, _BATCH_BYTES = 256, 1 << 20  # small enough that the workers stay evenly busy


def _batches(units, fmt, opts):
  batch, size = [], 0
  for i, unit in enumerate(units):
    for key, raw in inputs.read_unit(i, unit, fmt, opts.text_docs):
      batch.append((key, raw))
      size += len(raw)
      if len(batch) >= _BATCH_DOCS or size >= _BATCH_BYTES:
        yield batch
        batch, size = [], 0
  if batch:
    yield batch


_WORK = {}


def _init(fmt, opts):
  # Ctrl-C reaches the whole process group: the parent stops the pool and cleans up, so the
  # workers ignore it (each would print its own traceback).
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  _WORK["fmt"], _WORK["opts"] = fmt, opts


def _clean_batch(batch):
  return [document.clean_document(key, raw, _WORK["fmt"], _WORK["opts"]) for key, raw in batch]


def run_local(units: list, fmt: str, opts: CleanOptions, out_dir: str, workers: int = 0) -> dict:
  """Cleans `units` into shards in `out_dir`; returns the report's counters and shard names."""
  workers = workers or os.cpu_count() or 1
  totals: collections.Counter = collections.Counter()
  survivors: list[document.Outcome] = []

  def take(outcomes):
    for o in outcomes:
      if o.removed_by is None:
        survivors.append(o)
      else:
        totals.update(dict(_sum(document.counts(o))))

  if workers == 1:
    _init(fmt, opts)
    for batch in _batches(units, fmt, opts):
      take(_clean_batch(batch))
  else:
    # fork: workers inherit the imports; the pool sees batches in order (imap), so the
    # survivors arrive in input order whatever the scheduling.
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_init, initargs=(fmt, opts)) as pool:
      for outcomes in pool.imap(_clean_batch, _batches(units, fmt, opts)):
        take(outcomes)

  removed: dict[tuple, str] = {}
  if opts.exact_dedup:
    for key in dedup.exact_duplicates([(o.key, o.text_hash) for o in survivors]):
      removed[key] = "exact_dup"
  if opts.near_dedup:
    rest = [(o.key, o.signature) for o in survivors if o.key not in removed]
    for key in dedup.near_duplicates(rest, opts.jaccard, opts.num_perm):
      removed[key] = "near_dup"
  shards: dict[tuple, list] = collections.defaultdict(list)
  for o in survivors:
    totals.update(dict(_sum(document.counts(o, removed.get(o.key)))))
    if o.key not in removed:
      shards[output.shard_key(o.key, opts.shard_docs)].append((o.key, o.line))
  names = []
  for shard, lines in sorted(shards.items()):
    name = output.shard_name(shard)
    with open(os.path.join(out_dir, name), "wb") as f:
      f.write(output.jsonl_bytes(lines))
    names.append(name)
    if opts.tfrecord:
      output.write_tfrecord(os.path.join(out_dir, output.shard_name(shard, "tfrecord")), lines, opts.field)
  return {"totals": dict(totals), "shards": names}


def _sum(pairs):
  out: dict[str, int] = collections.defaultdict(int)
  for k, v in pairs:
    out[k] += v
  return out.items()


__all__ = ["run_local"]
