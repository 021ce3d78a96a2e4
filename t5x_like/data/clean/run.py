"""`t5x-like data clean`: lists and probes the input, runs an engine (the process pool, or
Beam with `runner`), writes report.json beside the shards and returns the report.
A local output directory appears only when complete (written as OUT.incomplete, renamed).
A remote one (gs://..., for Beam runners whose workers cannot see this machine's disk) is
written in place through TensorFlow's filesystems, and report.json, written last, marks it
complete."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time

from t5x_like.data.clean import inputs, report
from t5x_like.data.clean.options import CleanOptions
from t5x_like.errors import ConfigError, DataError
from t5x_like.workdir import writing_output

RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner", "PrismRunner")


def clean(patterns: list[str], out_dir: str, opts: CleanOptions, *, runner: str = "", pipeline_args=(),
          workers: int = 0, data_dir: str = "", split: str = "train") -> dict:
  opts = opts.check()
  if runner and runner not in RUNNERS:
    raise ConfigError(f"--runner {runner!r}: use one of {', '.join(RUNNERS)}, or leave it out for the "
                      "process pool on this machine")
  if pipeline_args and not runner:
    raise ConfigError(f"unexpected arguments: {' '.join(pipeline_args)} (runner flags need --runner)")
  remote = "://" in out_dir
  if remote:
    import tensorflow as tf
    if tf.io.gfile.exists(out_dir):
      raise DataError(f"{out_dir} already exists; delete it or choose another --output")
  elif os.path.lexists(out_dir):  # a dangling symlink too: the final rename would fail on it
    raise DataError(f"{out_dir} already exists; delete it or choose another --output")
  if remote and not runner:
    raise ConfigError(f"--output {out_dir} is remote: the process pool writes local directories; "
                      "use a local --output, or a Beam --runner")
  units, fmt = inputs.list_units(patterns, opts.fmt, data_dir, split)
  skipped, readable = [], []
  for unit in units:
    why = inputs.probe(unit)
    if why:
      skipped.append({"path": unit.path, "why": why})
    else:
      readable.append(unit)
  work = out_dir if remote else out_dir.rstrip("/") + ".incomplete"
  # A local OUT.incomplete is held while it fills: a second clean to the same output stops.
  with contextlib.nullcontext() if remote else writing_output(work, "t5x-like data clean"):
    if remote:
      tf.io.gfile.makedirs(work)
    else:
      shutil.rmtree(work, ignore_errors=True)  # what a crashed run left behind
      os.makedirs(work)
    start = time.time()
    try:
      if runner:
        from t5x_like.data.clean.beam import run_beam
        result = run_beam(readable, fmt, opts, work, runner, list(pipeline_args))
      else:
        from t5x_like.data.clean.local import run_local
        result = run_local(readable, fmt, opts, work, workers)
      options = dict(dataclasses.asdict(opts), fmt=fmt)
      rep = report.build(result["totals"], skipped_files=skipped, options=options,
                         engine=runner or f"processes ({workers or os.cpu_count()})", shards=result["shards"])
      rep["seconds"] = round(time.time() - start, 3)
      report.write(rep, os.path.join(work, "report.json"))
    except BaseException:
      if not remote:
        shutil.rmtree(work, ignore_errors=True)
      raise
    if not remote:
      os.rename(work, out_dir)
  return rep


__all__ = ["RUNNERS", "clean"]
