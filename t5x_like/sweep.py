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
import itertools
import json
import os
import re
import subprocess
import sys
import time

from t5x_like.config import ConfigError, build_config
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

  def args(self) -> list[str]:
    return [f"--config.{k}={_text(v)}" for k, v in self.overrides.items()]


def _text(value) -> str:
  return json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)


def load_sweep(path: str) -> Sweep:
  module = import_file(path, "configs/sweeps/tiny_lr_width.py")
  if not hasattr(module, "get_sweep"):
    raise ConfigError(f"sweep file {path} has no get_sweep() function")
  sweep = module.get_sweep()
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


def run_name(overrides: dict) -> str:
  """Readable and filesystem-safe: 'learning_rate=0.001,d_model=64' from the swept keys."""
  parts = [f"{k.rsplit('.', 1)[-1]}={_text(v)}" for k, v in overrides.items()]
  return re.sub(r"[^A-Za-z0-9=,._+-]", "_", ",".join(parts)) or "base"


def expand(sweep: Sweep) -> list[SweepRun]:
  """The runs of a sweep, each config checked (an unknown key or a bad value names the run)."""
  if sweep.grid and sweep.runs:
    raise ConfigError("a sweep sets either grid or runs, not both")
  if sweep.grid:
    empty = [k for k, v in sweep.grid.items() if not isinstance(v, (list, tuple)) or not v]
    if empty:
      raise ConfigError(f"sweep grid entries {empty} have no values; give each key a non-empty list")
    keys = list(sweep.grid)
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*sweep.grid.values())]
  else:
    combos = [dict(r) for r in sweep.runs]
  if not combos:
    raise ConfigError("the sweep has no runs: its grid and runs are empty")
  runs, names = [], set()
  for swept in combos:
    name = run_name(swept)
    if name in names:
      raise ConfigError(f"two runs of the sweep are both named {name!r}; make their overrides differ")
    names.add(name)
    run = SweepRun(name, {**sweep.fixed, **swept}, os.path.join(sweep.root, name))
    try:
      build_config(sweep.base, run.args())
    except ConfigError as e:
      raise ConfigError(f"sweep run {name}: {e}") from None
    runs.append(run)
  return runs


def finished(run: SweepRun) -> bool:
  try:
    with open(os.path.join(run.workdir, STATUS_NAME)) as f:
      return json.load(f).get("status") == "finished"
  except (OSError, ValueError):
    return False


def _train_argv(sweep: Sweep, run: SweepRun) -> list[str]:
  return [sys.executable, "-m", "t5x_like.cli", *Job(sweep.base, run.workdir, run.args()).train_args()]


def launch_local(sweep: Sweep, runs: list[SweepRun], parallel: int = 1, dry_run: bool = False) -> int:
  """Runs K at a time; each writes WORKDIR/train.log. Returns the number of failed runs."""
  todo = [r for r in runs if not finished(r)]
  print(f"sweep: {len(runs)} run(s) under {sweep.root}; {len(runs) - len(todo)} finished, {len(todo)} to run")
  if dry_run:
    for r in todo:
      print(f"# {r.name}\n" + " ".join(_train_argv(sweep, r)))
    return 0
  running, failed = [], 0
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  while todo or running:
    while todo and len(running) < max(parallel, 1):
      r = todo.pop(0)
      os.makedirs(r.workdir, exist_ok=True)
      log = open(os.path.join(r.workdir, "train.log"), "a")
      running.append((r, subprocess.Popen(_train_argv(sweep, r), env=env, stdout=log, stderr=subprocess.STDOUT), log))
    for item in list(running):
      r, proc, log = item
      if proc.poll() is not None:
        log.close()
        running.remove(item)
        failed += proc.returncode != 0
        print(f"sweep: {r.name} {'finished' if proc.returncode == 0 else f'failed ({proc.returncode})'}", flush=True)
    time.sleep(0.5)
  return failed


def launch_slurm_array(sweep: Sweep, runs: list[SweepRun], nodes: int = 1, gpus_per_node: int = 0,
                       dry_run: bool = False, **options) -> int:
  """One array task per unfinished run: commands.txt holds one train command per line."""
  todo = [r for r in runs if not finished(r)]
  if not todo:
    print(f"sweep: all {len(runs)} run(s) under {sweep.root} are finished")
    return 0
  commands = os.path.join(os.path.abspath(sweep.root), "commands.txt")
  lines = [f"t5x-like {' '.join(Job(sweep.base, r.workdir, r.args()).train_args())}" for r in todo]
  script = slurm_script(Job(sweep.base, sweep.root, [], name="t5x_like_sweep"), nodes, gpus_per_node,
                        array=f"0-{len(todo) - 1}", commands_file=commands, **options)
  if dry_run:
    print(f"# {commands}:\n" + "\n".join(lines) + f"\n# sweep.sbatch:\n{script}", end="")
    return 0
  from t5x_like.launch import require_tool

  sbatch = require_tool("sbatch")
  os.makedirs(sweep.root, exist_ok=True)
  with open(commands, "w") as f:
    f.write("\n".join(lines) + "\n")
  path = os.path.join(sweep.root, "sweep.sbatch")
  with open(path, "w") as f:
    f.write(script)
  return subprocess.run([sbatch, path]).returncode


def launch_tpu_runs(sweep: Sweep, runs: list[SweepRun], tpu: str, zone: str, dry_run: bool = False,
                    **options) -> int:
  """The runs one after another on one TPU slice."""
  for r in runs:
    if finished(r):
      continue
    code = launch_tpu(Job(sweep.base, r.workdir, r.args(), name=r.name), tpu, zone, dry_run=dry_run, **options)
    if code:
      return code
  return 0
