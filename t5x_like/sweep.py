"""Sweeps: a file in configs/sweeps/ names a base config and a grid (or a list) of overrides;
`t5x-like sweep FILE` expands it into runs with readable names, one workdir each under the
sweep's root, checks every run's config before anything launches, and starts them locally
(K at a time), as a SLURM job array, or as TPU commands. Rerunning a sweep skips finished
runs and resumes unfinished ones (each trainer resumes its own workdir).

    def get_sweep():
      return Sweep(base="configs/tiny/gpt.py", root="workdirs/sweeps/lr_width",
                   grid={"optimizer.learning_rate": [1e-3, 3e-3], "model.d_model": [64, 128]},
                   fixed={"train.steps": 200})
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import time

from t5x_like.config import ConfigError, build_config, to_dict
from t5x_like.config.loading import import_file
from t5x_like.launch import Job, launch_tpu, slurm_script
from t5x_like.workdir import STATUS_NAME


@dataclasses.dataclass
class Sweep:
  base: str  # the config file every run starts from
  grid: dict = dataclasses.field(default_factory=dict)  # key -> list of values: every combination
  runs: list = dataclasses.field(default_factory=list)  # or explicit {key: value} dicts
  fixed: dict = dataclasses.field(default_factory=dict)  # overrides shared by every run
  root: str = ""  # where the runs' workdirs go; default workdirs/sweeps/<file name>


@dataclasses.dataclass
class SweepRun:
  name: str
  overrides: dict
  workdir: str
  config: dict | None = None  # the full config this run trains with (set by expand)

  def args(self) -> list[str]:
    return [f"--config.{k}={_text(v)}" for k, v in self.overrides.items()]


def _text(value) -> str:
  return json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)


def load_sweep(path: str) -> Sweep:
  module = import_file(path, "configs/sweeps/tiny_lr_width.py")
  if not hasattr(module, "get_sweep"):
    raise ConfigError(f"sweep file {path} has no get_sweep() function")
  try:
    sweep = module.get_sweep()
  except TypeError as e:  # Sweep(gird=...): a misspelled field
    raise ConfigError(f"sweep file {path}: get_sweep() failed: {e}; Sweep takes base, grid, runs, fixed "
                      "and root") from None
  if not isinstance(sweep, Sweep):
    raise ConfigError(f"{path}: get_sweep() must return t5x_like.sweep.Sweep, got {type(sweep).__name__}")
  if not sweep.root:
    sweep.root = os.path.join("workdirs", "sweeps", os.path.splitext(os.path.basename(path))[0])
  sweep.base = _find_base(sweep.base, path)
  return sweep


def _find_base(base: str, sweep_path: str) -> str:
  """The base config as given when it exists from here; else, a relative path found from
  the sweep file's folder or one above it (configs/sweeps/x.py naming configs/tiny/gpt.py,
  run from outside the project), made absolute."""
  if os.path.isabs(base) or os.path.exists(base):
    return base
  folder = os.path.dirname(os.path.abspath(sweep_path))
  while True:
    if os.path.isfile(os.path.join(folder, base)):
      return os.path.join(folder, base)
    if os.path.dirname(folder) == folder:
      raise ConfigError(f"sweep file {sweep_path}: base config {base!r} is found neither from the current "
                        f"directory nor from the sweep file's folder or those above it; give its path "
                        f"relative to one of them, or an absolute path")
    folder = os.path.dirname(folder)


MAX_NAME = 120  # characters of a run's folder name (file systems stop at 255 bytes)


def run_name(overrides: dict) -> str:
  """Readable and filesystem-safe: 'learning_rate=0.001,d_model=64' from the swept keys; a
  name longer than MAX_NAME keeps its start and ends with a digest of the whole."""
  parts = [f"{k.rsplit('.', 1)[-1]}={_text(v)}" for k, v in overrides.items()]
  name = re.sub(r"[^A-Za-z0-9=,._+-]", "_", ",".join(parts)) or "base"
  if len(name) > MAX_NAME:
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    name = f"{name[:MAX_NAME - 11]}-{digest}"
  return name


def expand(sweep: Sweep) -> list[SweepRun]:
  """The runs of a sweep, each config checked (an unknown key or a bad value names the run)."""
  if sweep.grid and sweep.runs:
    raise ConfigError("a sweep sets either grid or runs, not both")
  if sweep.grid:
    scalar = [k for k, v in sweep.grid.items() if not isinstance(v, (list, tuple))]
    if scalar:
      raise ConfigError(f"sweep grid entries {scalar} are single values; give each key a list of values "
                        "(a value shared by every run goes in fixed)")
    empty = [k for k, v in sweep.grid.items() if not v]
    if empty:
      raise ConfigError(f"sweep grid entries {empty} have no values; give each key a non-empty list")
    keys = list(sweep.grid)
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*sweep.grid.values())]
  else:
    combos = [dict(r) for r in sweep.runs]
  if not combos:
    raise ConfigError("the sweep has no runs: its grid and runs are empty")
  runs, names, seen = [], set(), []
  for swept in combos:
    if swept in seen:
      raise ConfigError(f"two runs of the sweep have the same overrides {swept}; make their overrides differ")
    seen.append(swept)
    name = run_name(swept)
    if name in names:  # values that differ only in characters a folder name cannot keep (cafe, cafe)
      name = f"{name}-{hashlib.sha256(json.dumps(swept, sort_keys=True).encode()).hexdigest()[:8]}"
    names.add(name)
    run = SweepRun(name, {**sweep.fixed, **swept}, os.path.join(sweep.root, name))
    try:
      run.config = to_dict(build_config(sweep.base, run.args()))
    except ConfigError as e:
      raise ConfigError(f"sweep run {name}: {e}") from None
    runs.append(run)
  return runs


def _read_json(path: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _differences(saved, wanted, prefix: str = "") -> list[str]:
  """Fields whose values differ; a field only one side has (a config written by another
  t5x_like version, before a field was added or after one was removed) is no difference."""
  if isinstance(saved, dict) and isinstance(wanted, dict):
    return [d for k in sorted(set(saved) & set(wanted)) for d in _differences(saved[k], wanted[k], f"{prefix}{k}.")]
  return [] if saved == wanted else [f"{prefix[:-1]}: {saved!r} -> {wanted!r}"]


def changes(run: SweepRun) -> list[str]:
  """The config fields in which a run's saved config.json differs from the one the sweep
  builds for it now (the sweep file, its base config or their defaults changed)."""
  saved = _read_json(os.path.join(run.workdir, "config.json"))
  if not isinstance(saved, dict) or run.config is None:
    return []
  return _differences(saved, json.loads(json.dumps(run.config)))


def _more_steps(run: SweepRun) -> bool:
  """The sweep now asks for more steps than the run finished with: resuming continues it."""
  saved = _read_json(os.path.join(run.workdir, "config.json"))
  steps = ((saved or {}).get("train") or {}).get("steps") if isinstance(saved, dict) else None
  wanted = ((run.config or {}).get("train") or {}).get("steps")
  return isinstance(steps, int) and isinstance(wanted, int) and wanted > steps


def finished(run: SweepRun) -> bool:
  """Finished, and not asked for more steps since (a raised train.steps runs it again: its
  trainer resumes its checkpoints and continues)."""
  status = _read_json(os.path.join(run.workdir, STATUS_NAME))
  return isinstance(status, dict) and status.get("status") == "finished" and not _more_steps(run)


def _todo(runs: list[SweepRun]) -> list[SweepRun]:
  """The runs to start; a line for each finished run whose config the sweep has changed."""
  todo = [r for r in runs if not finished(r)]
  for r in runs:
    diff = changes(r)
    if not diff:
      continue
    shown = "; ".join(diff[:3]) + (f" and {len(diff) - 3} more" if len(diff) > 3 else "")
    if r in todo:
      print(f"sweep: {r.name} asks for more steps than it finished ({shown}); it resumes from its checkpoints",
            flush=True)
    elif finished(r):
      print(f"sweep: {r.name} finished with another config than this sweep now gives it ({shown}); it is not "
            f"rerun (resuming would train no step): delete {r.workdir} to train it with this config", flush=True)
  return todo


def _train_argv(sweep: Sweep, run: SweepRun, devices: int | None = None) -> list[str]:
  argv = [sys.executable, "-m", "t5x_like.cli", *Job(sweep.base, run.workdir, run.args()).train_args()]
  return argv + (["--cpu-devices", str(devices)] if devices else [])


def launch_local(sweep: Sweep, runs: list[SweepRun], parallel: int = 1, dry_run: bool = False,
                 devices: int | None = None) -> int:
  """Runs K at a time (with `devices` simulated CPU devices each, when given); each writes
  WORKDIR/train.log. Returns the number of failed runs."""
  todo = _todo(runs)
  print(f"sweep: {len(runs)} run(s) under {sweep.root}; {len(runs) - len(todo)} finished, {len(todo)} to run")
  if dry_run:
    for r in todo:
      print(f"# {r.name}\n" + shlex.join(_train_argv(sweep, r, devices)))
    return 0
  running, failed = [], 0
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  while todo or running:
    while todo and len(running) < max(parallel, 1):
      r = todo.pop(0)
      os.makedirs(r.workdir, exist_ok=True)
      log = open(os.path.join(r.workdir, "train.log"), "a")
      running.append((r, subprocess.Popen(_train_argv(sweep, r, devices), env=env, stdout=log, stderr=subprocess.STDOUT), log))
    for item in list(running):
      r, proc, log = item
      if proc.poll() is not None:
        log.close()
        running.remove(item)
        failed += proc.returncode != 0
        print(f"sweep: {r.name} {'finished' if proc.returncode == 0 else f'failed ({proc.returncode})'}", flush=True)
    time.sleep(0.5)
  return failed


def _one_line(argv: list[str]) -> str:
  """A bash command on one line (the array task reads its line of the commands file): an
  argument holding a line break is written in bash's $'...' quoting."""
  def quote(a: str) -> str:
    if "\n" not in a and "\r" not in a:
      return shlex.quote(a)
    body = a.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"$'{body}'"
  return " ".join(quote(a) for a in argv)


def launch_slurm_array(sweep: Sweep, runs: list[SweepRun], nodes: int = 1, gpus_per_node: int = 0,
                       dry_run: bool = False, **options) -> int:
  """One array task per unfinished run. Each submission writes its own commands file
  (ROOT/commands-TIME.txt, one shell-quoted train command per line) and sbatch script, so
  the tasks of an earlier array still queued read the lines they were given."""
  todo = _todo(runs)
  if not todo:
    print(f"sweep: all {len(runs)} run(s) under {sweep.root} are finished")
    return 0
  stamp = time.strftime("%Y%m%d-%H%M%S")
  root = os.path.abspath(sweep.root)
  commands = os.path.join(root, f"commands-{stamp}.txt")
  n = 1
  while os.path.exists(commands):
    commands, n = os.path.join(root, f"commands-{stamp}-{n}.txt"), n + 1
  path = os.path.join(root, os.path.basename(commands).replace("commands-", "sweep-", 1)[:-len(".txt")] + ".sbatch")
  lines = [_one_line(["t5x-like", *Job(sweep.base, r.workdir, r.args()).train_args()]) for r in todo]
  script = slurm_script(Job(sweep.base, sweep.root, [], name="t5x_like_sweep"), nodes, gpus_per_node,
                        array=f"0-{len(todo) - 1}", commands_file=commands, **options)
  if dry_run:
    print(f"# {commands}:\n" + "\n".join(lines) + f"\n# {path}:\n{script}", end="")
    return 0
  from t5x_like.launch import require_tool

  sbatch = require_tool("sbatch")
  os.makedirs(sweep.root, exist_ok=True)
  with open(commands, "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(path, "w") as f:
    f.write(script)
  return subprocess.run([sbatch, path]).returncode


def launch_tpu_runs(sweep: Sweep, runs: list[SweepRun], tpu: str, zone: str, dry_run: bool = False,
                    **options) -> int:
  """The runs one after another on one TPU slice."""
  for r in _todo(runs):
    code = launch_tpu(Job(sweep.base, r.workdir, r.args(), name=r.name), tpu, zone, dry_run=dry_run, **options)
    if code:
      return code
  return 0
