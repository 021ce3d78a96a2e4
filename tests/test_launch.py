"""Launchers pass the config, workdir and overrides through unchanged; their dry runs print
the exact commands and per-host environment; a missing tool is one plain line."""

import os

import pytest

from t5x_like import cli, launch

OVERRIDES = ["--config.train.steps=20", "--config.optimizer.learning_rate=1e-3"]


def test_local_dry_run_has_one_command_per_process(capsys):
  assert cli.main(["launch", "local", "--config", "configs/tiny/gpt.py", "--workdir", "wd", "--processes", "2",
                   "--devices", "4", "--dry-run", *OVERRIDES]) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 2
  for i, line in enumerate(lines):
    assert line.startswith(f"# process {i}: TF_CPP_MIN_LOG_LEVEL=3 ")
    assert "-m t5x_like.cli train --config configs/tiny/gpt.py --workdir wd " + " ".join(OVERRIDES) in line
    assert f"--num-processes 2 --process-id {i} --cpu-devices 4" in line and "--coordinator 127.0.0.1:" in line
  assert lines[0].split("--coordinator ")[1].split()[0] == lines[1].split("--coordinator ")[1].split()[0]


def test_slurm_script_runs_one_task_per_node_and_requeues(capsys):
  assert cli.main(["launch", "slurm", "--config", "configs/tiny/gpt.py", "--workdir", "/scratch/run", "--nodes", "4",
                   "--gpus-per-node", "8", "--partition", "gpu", "--setup", "source ~/venv/bin/activate",
                   "--dry-run", *OVERRIDES]) == 0
  out = capsys.readouterr().out
  for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8", "#SBATCH --requeue",
               "#SBATCH --signal=TERM@120", "#SBATCH --partition=gpu", "source ~/venv/bin/activate",
               "srun --kill-on-bad-exit=1 t5x-like train --config configs/tiny/gpt.py --workdir /scratch/run "
               + " ".join(OVERRIDES)):
    assert line in out, line
  assert "SLURM_PROCID=0..3" in out


def test_tpu_commands_reach_every_worker(capsys):
  assert cli.main(["launch", "tpu", "--config", "configs/tiny/gpt.py", "--workdir", "gs://b/run", "--tpu", "v5p-64",
                   "--zone", "us-east5-a", "--project", "p", "--install", "--dry-run", *OVERRIDES]) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert lines[0].startswith("gcloud compute tpus tpu-vm scp --recurse . 'v5p-64:~/t5x_like' --worker=all")
  assert "pip install -q -e .[tpu]" in lines[1]
  assert lines[2].startswith("gcloud compute tpus tpu-vm ssh v5p-64 --worker=all --zone us-east5-a --project p")
  assert "python3 -m t5x_like.cli train --config configs/tiny/gpt.py --workdir gs://b/run " + " ".join(OVERRIDES) in lines[2]
  xpk = launch.xpk_command(launch.Job("c.py", "gs://b/run", OVERRIDES, name="my_run"), "cluster", "v5p-64")
  assert xpk[:3] == ["xpk", "workload", "create"] and "my-run" in xpk and xpk[-1].endswith(" ".join(OVERRIDES))


@pytest.mark.parametrize("where, tool", [("slurm", "sbatch"), ("tpu", "gcloud")])
def test_a_missing_tool_is_one_line(where, tool, monkeypatch, capsys, tmp_path):
  monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
  args = ["launch", where, "--config", "configs/tiny/gpt.py", "--workdir", str(tmp_path / "run"),
          "--tpu", "t", "--zone", "z"]
  assert cli.main(args) == 2
  err = capsys.readouterr().err.strip()
  assert err == f"error: `{tool}` is not on PATH; install it (or run where it is), or use --dry-run to see the commands"
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_a_bad_override_fails_before_launching(capsys):
  assert cli.main(["launch", "local", "--config", "configs/tiny/gpt.py", "--workdir", "wd", "--dry-run",
                   "--config.train.stepz=5"]) == 2
  assert "did you mean 'train.steps'" in capsys.readouterr().err
