"""`t5x-like runs ROOT`: every run under a directory as one table row (status, step, tokens,
losses, throughput), read from each workdir's metrics.jsonl, summary.json, config.json and
status.json; and `--plot` draws train and eval loss against tokens for all of them.

A run is a directory holding any of those files. A missing or truncated file is shown in
the row's note, never a crash; a run whose status says running but whose lock has no
recent heartbeat is shown as died.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

from t5x_like.errors import ConfigError
from t5x_like.workdir import LEASE_S, LOCK_NAME, STATUS_NAME

RUN_FILES = ("metrics.jsonl", "summary.json", "config.json", STATUS_NAME)
LOG_NAME = "train.log"  # what a local sweep writes for each run (the trainer may stop before its own files)
COLUMNS = ("name", "status", "step", "tokens_seen", "train_loss", "best_eval_loss", "tokens_per_s", "mfu",
           "wall_s", "note")


@dataclasses.dataclass
class RunInfo:
  name: str
  path: str
  status: str = "unknown"
  step: int | None = None
  total_steps: int | None = None
  tokens_seen: float | None = None
  train_loss: float | None = None
  best_eval_loss: float | None = None
  tokens_per_s: float | None = None
  mfu: float | None = None
  wall_s: float | None = None
  note: str = ""
  curve: list = dataclasses.field(default_factory=list)  # (tokens, train loss) per logged step
  eval_curve: list = dataclasses.field(default_factory=list)  # (tokens, eval loss)


def find_runs(root: str) -> list[str]:
  """Run directories under `root` (itself included), not looking inside a run."""
  if not os.path.isdir(root):
    raise ConfigError(f"{root} is not a directory; pass the directory that holds the runs")
  found = []
  for path, dirs, files in os.walk(root):
    if any(f in files for f in (*RUN_FILES, LOG_NAME)):
      found.append(path)
      dirs[:] = []  # checkpoints/, eval/, tensorboard/ belong to this run
    else:
      dirs.sort()
  return sorted(found)


def _json(path: str):
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return "unreadable"


def _metrics(path: str) -> tuple[list[dict], str]:
  """The rows of metrics.jsonl, and a note on what was wrong with the file."""
  try:
    with open(path, "rb") as f:
      lines = f.read().splitlines()
  except FileNotFoundError:
    return [], "no metrics.jsonl"
  except OSError as e:
    return [], f"metrics.jsonl unreadable ({e.strerror})"
  rows, bad = [], 0
  for line in lines:
    try:
      row = json.loads(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
      row = None
    if isinstance(row, dict):
      rows.append(row)
    else:
      bad += 1
  return rows, (f"metrics.jsonl: {bad} unreadable line(s), e.g. truncated" if bad else "")


def _last_line(path: str) -> str:
  try:
    with open(path, "rb") as f:
      f.seek(max(0, os.path.getsize(path) - 4096))
      lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
  except OSError:
    return ""
  return lines[-1][:200] if lines else ""


def _status(path: str, status) -> str:
  if not isinstance(status, dict):
    return "unknown"
  state = status.get("status", "unknown")
  if state == "running":
    lock = os.path.join(path, LOCK_NAME)
    if not os.path.exists(lock) or time.time() - os.stat(lock).st_mtime > LEASE_S:
      return "died"  # the trainer is gone without saying how it ended (a kill, a lost host)
  return state


_NUMBERS = ("step", "total_steps", "tokens_seen", "train_loss", "best_eval_loss", "tokens_per_s", "mfu", "wall_s")


def _number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


def read_run(path: str, root: str) -> RunInfo:
  """One row; files whose values have the wrong types (hand-edited, another tool's) are a
  note in it, never a crash of the whole table."""
  name = os.path.relpath(path, root) if os.path.abspath(path) != os.path.abspath(root) else os.path.basename(path)
  try:
    info = _read_run(path, name)
  except (TypeError, ValueError, AttributeError, KeyError) as e:
    return RunInfo(name=name, path=path, note=f"files unreadable ({type(e).__name__}: {e})")
  bad = [f for f in _NUMBERS if getattr(info, f) is not None and not _number(getattr(info, f))]
  for f in bad:
    setattr(info, f, None)
  info.curve = [p for p in info.curve if _number(p[0]) and _number(p[1])]
  info.eval_curve = [p for p in info.eval_curve if _number(p[0]) and _number(p[1])]
  if bad:
    info.note = "; ".join(filter(None, [info.note, f"not numbers: {', '.join(bad)}"]))
  return info


def _read_run(path: str, name: str) -> RunInfo:
  info = RunInfo(name=name, path=path)
  if not any(os.path.exists(os.path.join(path, f)) for f in RUN_FILES):
    # A run that stopped before writing any of its files (a refused config, a held workdir).
    last = _last_line(os.path.join(path, LOG_NAME))
    info.note = f"{LOG_NAME} only: {last}" if last else f"{LOG_NAME} only, empty"
    info.status = "failed" if last.startswith("error:") else "unknown"
    return info
  rows, note = _metrics(os.path.join(path, "metrics.jsonl"))
  notes = [note] if note else []
  for file in ("summary.json", "config.json", STATUS_NAME):
    if _json(os.path.join(path, file)) == "unreadable":
      notes.append(f"{file} unreadable")
  config, summary = _json(os.path.join(path, "config.json")), _json(os.path.join(path, "summary.json"))
  info.status = _status(path, _json(os.path.join(path, STATUS_NAME)))
  if isinstance(config, dict):
    info.total_steps = (config.get("train") or {}).get("steps")
  by_step = {}
  for r in rows:  # a resumed run writes the steps after its checkpoint again: the last row wins
    by_step.setdefault(r.get("step"), {}).update(r)
  for step in sorted(s for s in by_step if isinstance(s, int)):
    r = by_step[step]
    loss = r.get("train_loss_avg", r.get("loss"))
    if loss is not None and r.get("tokens_seen") is not None:
      info.curve.append((r["tokens_seen"], loss))
      info.step, info.tokens_seen, info.train_loss = step, r["tokens_seen"], loss
      info.tokens_per_s, info.mfu = r.get("tokens_per_s"), r.get("mfu")
    if r.get("eval_loss") is not None:
      tokens = r.get("tokens_seen", info.tokens_seen)
      info.eval_curve.append((tokens if tokens is not None else step, r["eval_loss"]))
  evals = [e for _, e in info.eval_curve if isinstance(e, (int, float)) and math.isfinite(e)]
  info.best_eval_loss = min(evals) if evals else None
  if isinstance(summary, dict):
    info.wall_s = summary.get("wall_s")
    info.step = summary.get("steps", info.step)
  elif rows:
    times = [r["time"] for r in rows if "time" in r]
    info.wall_s = max(times) - min(times) if times else None
  if info.status == "unknown" and isinstance(summary, dict):
    info.status = "finished"
  info.note = "; ".join(notes)
  return info


def _matches(info: RunInfo, expr: str) -> bool:
  """KEY=VALUE, KEY~SUBSTRING, KEY<NUMBER or KEY>NUMBER on a column."""
  for op in ("~", "<", ">", "="):
    if op in expr:
      key, _, want = expr.partition(op)
      break
  else:
    raise ConfigError(f"--filter {expr!r}: use KEY=VALUE, KEY~TEXT, KEY<NUMBER or KEY>NUMBER")
  if key not in COLUMNS:
    raise ConfigError(f"--filter {expr!r}: unknown column {key!r}; columns: {', '.join(COLUMNS)}")
  value = getattr(info, key)
  if op in "<>":
    try:
      limit = float(want)
    except ValueError:
      raise ConfigError(f"--filter {expr!r}: {want!r} is not a number") from None
    return value is not None and (value < limit if op == "<" else value > limit)
  return want in str(value) if op == "~" else str(value) == want


def select(runs: list[RunInfo], sort: str = "name", filters=()) -> list[RunInfo]:
  """Rows passing every filter, sorted by a column (prefix '-' for descending); rows
  without the value sort last."""
  key, reverse = (sort[1:], True) if sort.startswith("-") else (sort, False)
  if key not in COLUMNS:
    raise ConfigError(f"--sort {sort!r}: unknown column; columns: {', '.join(COLUMNS)}")
  rows = [r for r in runs if all(_matches(r, f) for f in filters)]
  present = sorted((r for r in rows if getattr(r, key) is not None), key=lambda r: getattr(r, key), reverse=reverse)
  return present + [r for r in rows if getattr(r, key) is None]


def _cell(value, column: str) -> str:
  if value is None:
    return "-"
  if column == "mfu":
    return f"{100 * value:.1f}%"
  if column in ("train_loss", "best_eval_loss"):
    return f"{value:.4f}"
  if column in ("tokens_seen", "tokens_per_s"):
    return f"{value:,.0f}"
  if column == "wall_s":
    return f"{value:,.0f}s"
  return str(value)


def format_table(runs: list[RunInfo]) -> str:
  cells = [[_cell(getattr(r, c), c) if c != "step" or r.total_steps is None else
            f"{_cell(r.step, c)}/{r.total_steps}" for c in COLUMNS] for r in runs]
  widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(COLUMNS)]
  lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip()]
  lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
  return "\n".join(lines)


def plot(runs: list[RunInfo], path: str) -> list[str]:
  """Train (solid) and eval (dashed) loss against tokens seen, one colour per run; returns
  the labels of the lines drawn."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(9, 5.5))
  for i, r in enumerate(runs):
    colour = f"C{i % 10}"
    if r.curve:
      ax.plot(*zip(*r.curve, strict=True), color=colour, label=f"{r.name} train")
    if r.eval_curve:
      ax.plot(*zip(*r.eval_curve, strict=True), color=colour, linestyle="--", marker="o", label=f"{r.name} eval")
  ax.set_xlabel("tokens seen")
  ax.set_ylabel("loss (nats per token)")
  ax.set_title(f"{len(runs)} run(s)")
  ax.grid(alpha=0.3)
  if runs:
    ax.legend(fontsize=8)
  fig.tight_layout()
  try:
    fig.savefig(path, dpi=110)
  except OSError as e:
    plt.close(fig)
    raise ConfigError(f"--plot {path}: cannot write it ({e.strerror or e}); choose a path in a writable "
                      "directory that exists") from None
  labels = [line.get_label() for line in ax.get_lines()]
  plt.close(fig)
  return labels


def runs_table(root: str, *, sort: str = "name", filters=(), plot_path: str = "") -> list[RunInfo]:
  found = find_runs(root)
  if not found:
    print(f"no runs under {root} (a run is a folder holding metrics.jsonl, config.json, status.json, "
          f"summary.json or {LOG_NAME})")
    return []
  runs = select([read_run(p, root) for p in found], sort, filters)
  print(format_table(runs))
  if plot_path:
    plot(runs, plot_path)
    print(f"wrote {plot_path}")
  return runs
