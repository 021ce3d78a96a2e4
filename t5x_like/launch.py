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
import shlex
import shutil
import socket
import subprocess
import sys

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
  plan = local_plan(job, processes, devices)
  if dry_run:
    for i, (env, argv) in enumerate(plan):
      print(f"# process {i}: " + " ".join(f"{k}={v}" for k, v in env.items()) + f" {_quote(argv)}")
    return 0
  os.makedirs(os.path.join(job.workdir, "logs"), exist_ok=True)
  procs = []
  for i, (env, argv) in enumerate(plan):
    out = None if i == 0 else open(os.path.join(job.workdir, "logs", f"process_{i}.log"), "w")
    procs.append(subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT if out else None))
  codes = [p.wait() for p in procs]
  return max(codes, key=abs)


# ---------------------------------------------------------------- SLURM


def slurm_script(job: Job, nodes: int, gpus_per_node: int, *, time_limit: str = "24:00:00",
                 partition: str = "", account: str = "", setup: str = "", array: str = "",
                 commands_file: str = "") -> str:
  """An sbatch script: one task per node; each task runs the trainer, which finds its
  process id and the coordinator through jax.distributed's SLURM detection. With `array`,
  task i of the array runs line i+1 of `commands_file` (a sweep)."""
  if nodes < 1 or gpus_per_node < 0:
    raise LaunchError(f"--nodes {nodes} must be >= 1 and --gpus-per-node {gpus_per_node} >= 0")
  lines = ["#!/usr/bin/env bash", f"#SBATCH --job-name={job.name}", f"#SBATCH --nodes={nodes}",
           "#SBATCH --ntasks-per-node=1", f"#SBATCH --time={time_limit}", "#SBATCH --requeue",
           # SIGTERM two minutes before the limit or a preemption: the trainer saves and exits 0.
           "#SBATCH --signal=TERM@120", "#SBATCH --open-mode=append"]
  if gpus_per_node:
    lines.append(f"#SBATCH --gpus-per-node={gpus_per_node}")
  if partition:
    lines.append(f"#SBATCH --partition={partition}")
  if account:
    lines.append(f"#SBATCH --account={account}")
  if array:
    lines.append(f"#SBATCH --array={array}")
    lines.append(f"#SBATCH --output={os.path.join(os.path.dirname(commands_file), 'slurm-%A_%a.out')}")
  else:
    lines.append(f"#SBATCH --output={os.path.join(job.workdir, 'slurm-%j.out')}")
  lines += ["set -euo pipefail", "export TF_CPP_MIN_LOG_LEVEL=3"]
  if setup:
    lines.append(setup)
  if array:
    lines.append(f'cmd=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(commands_file)})')
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


def tpu_commands(job: Job, tpu: str, zone: str, *, project: str = "", repo_dir: str = "~/t5x_like",
                 install: bool = False) -> list[list[str]]:
  """gcloud commands: optionally copy this checkout to every worker and install it, then
  start the same train command on all workers at once."""
  if not tpu or not zone:
    raise LaunchError("a TPU launch needs --tpu NAME and --zone ZONE (the slice must exist: "
                      "gcloud compute tpus tpu-vm create ...)")
  base = ["gcloud", "compute", "tpus", "tpu-vm"]
  where = ["--zone", zone] + (["--project", project] if project else [])
  commands = []
  if install:
    commands.append(base + ["scp", "--recurse", ".", f"{tpu}:{repo_dir}", "--worker=all", *where])
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
