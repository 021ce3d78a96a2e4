"""The report of a clean run: the counters every document added (`document.counts`),
arranged per stage, checked (every input document is kept or removed by exactly one
stage) and printed as a table."""

from __future__ import annotations

import json

from t5x_like.data.clean.document import STAGES


def build(totals: dict[str, int], *, skipped_files: list, options: dict, engine: str,
          shards: list[str]) -> dict:
  stages = {}
  for stage in STAGES:
    docs, chars = totals.get(f"docs:{stage}", 0), totals.get(f"chars:{stage}", 0)
    if docs or chars:
      stages[stage] = {"docs_removed": docs, "chars_removed": chars}
  report = {
      "input_docs": totals.get("input_docs", 0), "input_chars": totals.get("input_chars", 0),
      "kept_docs": totals.get("kept_docs", 0), "kept_chars": totals.get("kept_chars", 0),
      "stages": stages, "skipped_files": skipped_files, "shards": shards,
      "engine": engine, "options": options,
  }
  removed = sum(s["docs_removed"] for s in stages.values())
  # The accounting is the point of the report: a mismatch is a bug, not bad data.
  assert report["kept_docs"] + removed == report["input_docs"], report
  assert report["kept_chars"] + sum(s["chars_removed"] for s in stages.values()) == report["input_chars"], report
  return report


def write(report: dict, path: str) -> None:
  text = json.dumps(report, indent=1) + "\n"
  if "://" in path:
    import tensorflow as tf
    with tf.io.gfile.GFile(path, "w") as f:
      f.write(text)
  else:
    with open(path, "w") as f:
      f.write(text)


def table(report: dict) -> str:
  n_docs, n_chars = max(1, report["input_docs"]), max(1, report["input_chars"])
  rows = [f"{'stage':<18}{'docs removed':>14}{'%':>8}{'chars removed':>16}{'%':>8}"]
  for stage, s in report["stages"].items():
    rows.append(f"{stage:<18}{s['docs_removed']:>14,}{100 * s['docs_removed'] / n_docs:>7.2f}%"
                f"{s['chars_removed']:>16,}{100 * s['chars_removed'] / n_chars:>7.2f}%")
  rows.append(f"{'kept':<18}{report['kept_docs']:>14,}{100 * report['kept_docs'] / n_docs:>7.2f}%"
              f"{report['kept_chars']:>16,}{100 * report['kept_chars'] / n_chars:>7.2f}%")
  rows.append(f"{'input':<18}{report['input_docs']:>14,}{'':>8}{report['input_chars']:>16,}")
  for f in report["skipped_files"]:
    rows.append(f"skipped file: {f['path']} ({f['why']})")
  return "\n".join(rows)


__all__ = ["build", "table", "write"]
