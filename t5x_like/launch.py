"""Launchers: the same `t5x-like train --config ... --workdir ... [overrides]` command started
where the hardware is, with the config, workdir and overrides passed through unchanged.
Rerunning a launch resumes the run (the trainer resumes its workdir), which is how all
three recover from preemption.

- local: N processes on this machine over jax.distributed on 127.0.0.1 (CPU devices
  simulated per process), to try multi-host behaviour anywhere;
- slurm: an sbatch script, one task per node, GPUs per node from the allocation;
  jax.distributed detects SLURM; `--requeue` plus SIGTERM 120 s before the end lets a
  preempted job save and come back;
- tpu: the command on every worker of a TPU VM slice through `gcloud compute tpus tpu-vm
  ssh --worker=all` (jax.distributed detects the slice), or the equivalent `xpk` workload.

Every launcher has a dry run that prints the exact commands and the environment of each
host; a missing tool (`sbatch`, `gcloud`) is one plain line.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time

from t5x_like.errors import UserError


class LaunchError(UserError):
  """A launch that cannot start: a missing tool, a bad option."""


@dataclasses.dataclass
class Job:
  config: str
  workdir: str
  overrides: list[str] = dataclasses.field(default_factory=list)
  name: str = "t5x_like"

  def train_args(self) -> list[str]:
    return ["train", "--config", self.config, "--workdir", self.workdir, *self.overrides]


def _quote(args: list[str]) -> str:
  return " ".join(shlex.quote(a) for a in args)


def _sbatch(option: str, value: str) -> str:
  """One `#SBATCH --option=value` line. sbatch splits these lines at whitespace outside
  quotes and takes a backslash as an escape, so a value with either is double-quoted."""
  if "\n" in value or "\r" in value:
    raise LaunchError(f"--{option} {value!r} holds a line break, which would end the #SBATCH line")
  if re.search(r"[\s\"'\\]", value):
    value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
  return f"#SBATCH --{option}={value}"


def job_name(name: str) -> str:
  """A scheduler-safe job name: letters, digits, '.', '_' and '-' (others become '_')."""
  return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:128] or "t5x_like"


def require_tool(tool: str) -> str:
  path = shutil.which(tool)
  if not path:
    raise LaunchError(f"`{tool}` is not on PATH; install it (or run where it is), or use --dry-run to see "
                      "the commands")
  return path


# ---------------------------------------------------------------- one machine


def local_plan(job: Job, processes: int, devices: int, port: int = 0,
               python: str = sys.executable) -> list[tuple[dict, list[str]]]:
  """(environment, argv) of each local process."""
  if processes < 1 or devices < 1:
    raise LaunchError(f"--processes {processes} and --devices {devices} must be >= 1")
  if not port:
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      port = s.getsockname()[1]
  plan = []
  for i in range(processes):
    extra = (["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes), "--process-id", str(i)]
             if processes > 1 else [])
    argv = [python, "-m", "t5x_like.cli", *job.train_args(), *extra, "--cpu-devices", str(devices)]
    plan.append(({"TF_CPP_MIN_LOG_LEVEL": "3"}, argv))
  return plan


def launch_local(job: Job, processes: int = 1, devices: int = 4, dry_run: bool = False) -> int:
  """Starts the processes and waits for all of them. The first one that fails stops the
  others (a process whose peer died would otherwise wait minutes in a collective) and is
  named with the end of its log. Returns the first failure's exit code (128 + N for
  signal N), or 0."""
  plan = local_plan(job, processes, devices)
  if dry_run:
    for i, (env, argv) in enumerate(plan):
      print(f"# process {i}: " + " ".join(f"{k}={v}" for k, v in env.items()) + f" {_quote(argv)}")
    return 0
  os.makedirs(os.path.join(job.workdir, "logs"), exist_ok=True)
  procs, logs = [], [None] * len(plan)
  for i, (env, argv) in enumerate(plan):
    if i:
      # Appended to, so that rerunning a failed launch keeps the failure's log.
      logs[i] = os.path.join(job.workdir, "logs", f"process_{i}.log")
      out = open(logs[i], "a")
      out.write(f"==== launch of {time.strftime('%Y-%m-%d %H:%M:%S')}: process {i} of {processes}\n")
      out.flush()
    else:
      out = None
    procs.append(subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT if out else None))
    if out:
      out.close()
  return _wait_all(procs, logs)


def _exit_code(code: int) -> int:
  return 128 - code if code < 0 else code


def _tail(path: str | None, lines: int = 3) -> str:
  if not path:
    return ""
  try:
    with open(path, "rb") as f:
      f.seek(max(0, os.path.getsize(path) - 8192))
      text = [ln for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
  except OSError:
    return ""
  errors = [ln for ln in text if ln.startswith("error:")]  # the trainer's one line, when it wrote one
  return "".join(f"\n  | {ln}" for ln in (errors[-1:] or text[-lines:]))


def _wait_all(procs: list, logs: list, grace_s: float = 10.0) -> int:
  try:
    while [p.poll() for p in procs].count(None):  # every one polled, none skipped
      if any(p.returncode for p in procs):
        break
      time.sleep(0.2)
  except KeyboardInterrupt:
    _stop(procs, grace_s)
    raise
  # Processes that failed by the same poll: the one with a user error (exit 2, its one line)
  # is the cause; the others most likely lost their connection to it.
  failures = [i for i, p in enumerate(procs) if p.returncode]
  if not failures:
    return 0
  failed = next((i for i in failures if procs[i].returncode == 2), failures[0])
  code = procs[failed].returncode
  running = [i for i, p in enumerate(procs) if p.poll() is None]
  where = f" (its log: {logs[failed]})" if logs[failed] else ""
  print(f"launch: process {failed} exited with code {_exit_code(code)}{where}"
        + (f"; stopping process(es) {', '.join(map(str, running))}" if running else "")
        + _tail(logs[failed]), file=sys.stderr, flush=True)
  _stop(procs, grace_s)
  return _exit_code(code)


def _stop(procs: list, grace_s: float) -> None:
  """SIGTERM to the processes still running (the trainer saves and exits on it when it can),
  SIGKILL to those still there after `grace_s`."""
  for p in procs:
    if p.poll() is None:
      p.terminate()
  deadline = time.time() + grace_s
  for p in procs:
    try:
      p.wait(timeout=max(0.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()


# ---------------------------------------------------------------- SLURM


def slurm_script(job: Job, nodes: int, gpus_per_node: int, *, time_limit: str = "24:00:00",
                 partition: str = "", account: str = "", setup: str = "", array: str = "",
                 commands_file: str = "") -> str:
  """An sbatch script: one task per node; each task runs the trainer, which finds its
  process id and the coordinator through jax.distributed's SLURM detection. With `array`,
  task i of the array runs line i+1 of `commands_file` (a sweep)."""
  if nodes < 1 or gpus_per_node < 0:
    raise LaunchError(f"--nodes {nodes} must be >= 1 and --gpus-per-node {gpus_per_node} >= 0")
  lines = ["#!/usr/bin/env bash", _sbatch("job-name", job_name(job.name)), f"#SBATCH --nodes={nodes}",
           "#SBATCH --ntasks-per-node=1", _sbatch("time", time_limit), "#SBATCH --requeue",
           # SIGTERM two minutes before the limit or a preemption: the trainer saves and exits 0.
           "#SBATCH --signal=TERM@120", "#SBATCH --open-mode=append"]
  if gpus_per_node:
    lines.append(f"#SBATCH --gpus-per-node={gpus_per_node}")
  if partition:
    lines.append(_sbatch("partition", partition))
  if account:
    lines.append(_sbatch("account", account))
  if array:
    lines.append(_sbatch("array", array))
    lines.append(_sbatch("output", os.path.join(os.path.dirname(commands_file), "slurm-%A_%a.out")))
  else:
    lines.append(_sbatch("output", os.path.join(job.workdir, "slurm-%j.out")))
  lines += ["set -euo pipefail", "export TF_CPP_MIN_LOG_LEVEL=3"]
  if setup:
    lines.append(setup)
  if array:
    # Each line of the commands file is one shell-quoted command (sweep.py writes it).
    lines.append(f'cmd=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(commands_file)})')
    lines.append('if [ -z "$cmd" ]; then echo "no command for array task $SLURM_ARRAY_TASK_ID in" '
                 f'{shlex.quote(commands_file)} >&2; exit 1; fi')
    lines.append('srun --kill-on-bad-exit=1 bash -c "$cmd"')
  else:
    lines.append(f"srun --kill-on-bad-exit=1 t5x-like {_quote(job.train_args())}")
  return "\n".join(lines) + "\n"


def launch_slurm(job: Job, nodes: int, gpus_per_node: int, dry_run: bool = False, **options) -> int:
  script = slurm_script(job, nodes, gpus_per_node, **options)
  if dry_run:
    print(script, end="")
    print(f"# per node: SLURM_PROCID=0..{nodes - 1}, jax.distributed reads SLURM_* for the coordinator; "
          f"each node uses its {gpus_per_node} GPU(s)")
    return 0
  sbatch = require_tool("sbatch")
  os.makedirs(job.workdir, exist_ok=True)
  path = os.path.join(job.workdir, "launch.sbatch")
  with open(path, "w") as f:
    f.write(script)
  return subprocess.run([sbatch, path]).returncode


# ---------------------------------------------------------------- TPU VM slices


def checkout_root() -> str | None:
  """The source checkout this t5x_like runs from (the folder with pyproject.toml above the
  package), or None for an installed wheel."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return root if os.path.isfile(os.path.join(root, "pyproject.toml")) else None


def _config_on_workers(config: str, root: str | None, install: bool) -> str:
  """The config path as the workers see it from the checkout's copy: relative to the
  checkout when the file is inside it. With --install a config outside the checkout would
  not reach the workers, so it is refused."""
  path = os.path.abspath(config)
  if root and os.path.commonpath([path, root]) == root:
    return os.path.relpath(path, root)
  if install:
    raise LaunchError(f"--install copies the checkout {root} to the workers, and the config {config} is "
                      f"outside it; move or copy the config under {root} (e.g. {root}/configs/)")
  return config


def tpu_commands(job: Job, tpu: str, zone: str, *, project: str = "", repo_dir: str = "~/t5x_like",
                 install: bool = False) -> list[list[str]]:
  """gcloud commands: optionally copy this checkout to every worker and install it, then
  start the same train command on all workers at once, from the checkout's copy there."""
  if not tpu or not zone:
    raise LaunchError("a TPU launch needs --tpu NAME and --zone ZONE (the slice must exist: "
                      "gcloud compute tpus tpu-vm create ...)")
  root = checkout_root()
  if install and root is None:
    raise LaunchError("--install copies a source checkout to the workers, and this t5x_like is an installed "
                      "package; run from a checkout (pip install -e .), or install it on the workers yourself")
  job = dataclasses.replace(job, config=_config_on_workers(job.config, root, install))
  base = ["gcloud", "compute", "tpus", "tpu-vm"]
  where = ["--zone", zone] + (["--project", project] if project else [])
  commands = []
  if install:
    commands.append(base + ["scp", "--recurse", root, f"{tpu}:{repo_dir}", "--worker=all", *where])
    commands.append(base + ["ssh", tpu, "--worker=all", *where, "--command",
                            f"cd {repo_dir} && python3 -m pip install -q -e .[tpu]"])
  train = f"cd {repo_dir} && TF_CPP_MIN_LOG_LEVEL=3 python3 -m t5x_like.cli {_quote(job.train_args())}"
  commands.append(base + ["ssh", tpu, "--worker=all", *where, "--command", train])
  return commands


def xpk_command(job: Job, cluster: str, tpu_type: str, num_slices: int = 1) -> list[str]:
  """The equivalent `xpk workload create` (GKE) command."""
  return ["xpk", "workload", "create", "--cluster", cluster, "--workload", job.name.replace("_", "-"),
          "--tpu-type", tpu_type, "--num-slices", str(num_slices), "--command",
          f"python3 -m t5x_like.cli {_quote(job.train_args())}"]


def launch_tpu(job: Job, tpu: str, zone: str, dry_run: bool = False, **options) -> int:
  commands = tpu_commands(job, tpu, zone, **options)
  if dry_run:
    for c in commands:
      print(_quote(c))
    print("# on every worker: jax.distributed finds the slice (TPU_WORKER_HOSTNAMES, the metadata server); "
          "TF_CPP_MIN_LOG_LEVEL=3")
    return 0
  gcloud = require_tool("gcloud")
  for c in commands:
    code = subprocess.run([gcloud, *c[1:]]).returncode
    if code:
      return code
  return 0
