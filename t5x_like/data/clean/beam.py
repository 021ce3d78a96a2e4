"""The Beam engine (`pip install -e ".[beam]"`): the same per-document function and the
same dedup rules as the process pool, as a pipeline, so its shards are byte-identical.

  units -> read (per unit) -> reshuffle -> clean_document
    -> survivors keyed by position -> exact: group by hash, all but the first are dups
    -> near: one entry per LSH band, group by bucket, `bucket_duplicates` per bucket
    -> survivors minus dups -> group by shard -> one file each, lines in input order
  every document's counters -> summed per counter -> counters.json for the report

`runner` and any other flags (`--project`, `--region`, `--temp_location`, Flink/Spark
endpoints...) go to Beam's PipelineOptions unchanged. Output files are written with
Beam's FileSystems, so the work directory may be on any filesystem Beam knows.
"""

from __future__ import annotations

import json
import os

import numpy as np

from t5x_like.data.clean import dedup, document, inputs, minhash, output
from t5x_like.data.clean.options import CleanOptions
from t5x_like.errors import ConfigError


def _beam():
  try:
    import apache_beam as beam
  except ImportError:
    raise ConfigError("--runner needs Apache Beam: pip install -e '.[beam]' (or leave --runner out "
                      "to clean with processes on this machine)") from None
  return beam


def run_beam(units: list, fmt: str, opts: CleanOptions, out_dir: str, runner: str, args: list[str]) -> dict:
  beam = _beam()
  from apache_beam.io.filesystems import FileSystems
  from apache_beam.options.pipeline_options import PipelineOptions

  b, r = minhash.bands(opts.jaccard, opts.num_perm)
  counters_path = os.path.join(out_dir, "counters.json")

  def band_entries(kv):
    key, o = kv
    sig = np.frombuffer(o.signature, dtype=np.uint32)
    for band in minhash.band_keys(sig, b, r):
      yield band, (key, o.signature)

  def minus(kv, stage):
    key, groups = kv
    docs, dups = list(groups["doc"]), list(groups["dup"])
    for o in docs:
      if dups:
        yield beam.pvalue.TaggedOutput("removed", (o, stage))
      else:
        yield key, o

  def write_shard(kv):
    shard, lines = kv
    lines = list(lines)
    with FileSystems.create(os.path.join(out_dir, output.shard_name(shard))) as f:
      f.write(output.jsonl_bytes(lines))
    if opts.tfrecord:
      output.write_tfrecord(os.path.join(out_dir, output.shard_name(shard, "tfrecord")), lines, opts.field)
    return output.shard_name(shard)

  def write_counters(pairs):
    with FileSystems.create(counters_path) as f:
      f.write(json.dumps(dict(sorted(pairs))).encode())

  def write_names(names):
    with FileSystems.create(os.path.join(out_dir, "shards.json")) as f:
      f.write(json.dumps(sorted(names)).encode())

  with beam.Pipeline(options=PipelineOptions(["--runner", runner, *args])) as p:
    outcomes = (p | "Units" >> beam.Create(list(enumerate(units)))
                | "Read" >> beam.FlatMap(lambda iu: inputs.read_unit(iu[0], iu[1], fmt, opts.text_docs))
                | "Spread" >> beam.Reshuffle()
                | "Clean" >> beam.Map(lambda kr: document.clean_document(kr[0], kr[1], fmt, opts)))
    removed_here = outcomes | "Removed" >> beam.Filter(lambda o: o.removed_by is not None)
    survivors = (outcomes | "Survivors" >> beam.Filter(lambda o: o.removed_by is None)
                 | "ByKey" >> beam.Map(lambda o: (o.key, o)))
    dedup_removed = []
    if opts.exact_dedup:
      exact = (survivors | "ByHash" >> beam.Map(lambda kv: (kv[1].text_hash, kv[0]))
               | "GroupHash" >> beam.GroupByKey()
               | "AllButFirst" >> beam.FlatMap(lambda hk: [(k, 1) for k in sorted(hk[1])[1:]]))
      split = ({"doc": survivors, "dup": exact} | "JoinExact" >> beam.CoGroupByKey()
               | "MinusExact" >> beam.FlatMap(minus, "exact_dup").with_outputs("removed", main="kept"))
      survivors = split.kept
      dedup_removed.append(split.removed)
    if opts.near_dedup:
      near = (survivors | "Bands" >> beam.FlatMap(band_entries)
              | "GroupBucket" >> beam.GroupByKey()
              | "Compare" >> beam.FlatMap(lambda bm: dedup.bucket_duplicates(list(bm[1]), opts.jaccard))
              | "Distinct" >> beam.Distinct()
              | "AsDup" >> beam.Map(lambda k: (k, 1)))
      split = ({"doc": survivors, "dup": near} | "JoinNear" >> beam.CoGroupByKey()
               | "MinusNear" >> beam.FlatMap(minus, "near_dup").with_outputs("removed", main="kept"))
      survivors = split.kept
      dedup_removed.append(split.removed)

    counts = [removed_here | "CountRemoved" >> beam.FlatMap(document.counts),
              survivors | "CountKept" >> beam.FlatMap(lambda kv: document.counts(kv[1]))]
    for i, pc in enumerate(dedup_removed):
      counts.append(pc | f"CountDup{i}" >> beam.FlatMap(lambda os_: document.counts(*os_)))
    (counts | "AllCounts" >> beam.Flatten() | "Sum" >> beam.CombinePerKey(sum)
     | "Collect" >> beam.combiners.ToList() | "WriteCounters" >> beam.Map(write_counters))
    (survivors | "ToShard" >> beam.Map(lambda kv: (output.shard_key(kv[0], opts.shard_docs), (kv[0], kv[1].line)))
     | "GroupShard" >> beam.GroupByKey() | "WriteShard" >> beam.Map(write_shard)
     | "Names" >> beam.combiners.ToList() | "WriteNames" >> beam.Map(write_names))

  with FileSystems.open(counters_path) as f:
    totals = json.loads(f.read())
  with FileSystems.open(os.path.join(out_dir, "shards.json")) as f:
    names = json.loads(f.read())
  FileSystems.delete([counters_path, os.path.join(out_dir, "shards.json")])
  return {"totals": totals, "shards": names}


__all__ = ["run_beam"]
