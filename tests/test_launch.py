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
  assert lines[0].startswith(f"gcloud compute tpus tpu-vm scp --recurse {launch.checkout_root()} 'v5p-64:~/t5x_like' "
                            "--worker=all")
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


def test_the_first_failing_process_stops_the_others_and_is_named(tmp_path, monkeypatch, capsys):
  """Process 1 fails at once while process 0 would wait for it (as in a collective): the
  launch stops process 0, names process 1 with the end of its log and returns its code,
  without waiting for process 0. The log is appended to across launches."""
  import sys
  import time

  sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
  failing = [sys.executable, "-c", "print('error: b.txt: line 1501 is not UTF-8', flush=True); raise SystemExit(2)"]
  monkeypatch.setattr(launch, "local_plan", lambda job, processes, devices: [({}, sleeper), ({}, failing)])
  job = launch.Job("configs/tiny/gpt.py", str(tmp_path / "run"))
  for _launch in (1, 2):
    t0 = time.time()
    assert launch.launch_local(job, processes=2) == 2
    assert time.time() - t0 < 60  # process 0 was stopped, not waited for
    err = capsys.readouterr().err
    assert f"launch: process 1 exited with code 2 (its log: {tmp_path / 'run' / 'logs' / 'process_1.log'}); " \
           "stopping process(es) 0" in err
    assert err.rstrip().endswith("| error: b.txt: line 1501 is not UTF-8")
  log = (tmp_path / "run" / "logs" / "process_1.log").read_text()
  assert log.count("process 1 of 2") == 2 and log.count("line 1501 is not UTF-8") == 2


def test_a_killed_process_is_reported_with_its_signal(tmp_path, monkeypatch, capsys):
  import sys

  killed = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
  ok = [sys.executable, "-c", "pass"]
  monkeypatch.setattr(launch, "local_plan", lambda job, processes, devices: [({}, ok), ({}, killed)])
  assert launch.launch_local(launch.Job("c.py", str(tmp_path / "run")), processes=2) == 137
  assert "process 1 exited with code 137" in capsys.readouterr().err
  monkeypatch.setattr(launch, "local_plan", lambda job, processes, devices: [({}, ok), ({}, ok)])
  assert launch.launch_local(launch.Job("c.py", str(tmp_path / "run")), processes=2) == 0


def _fake_tools(bin_dir):
  """`srun` that runs its command, and a `t5x-like` that prints its arguments as JSON."""
  import sys

  bin_dir.mkdir()
  (bin_dir / "srun").write_text('#!/usr/bin/env bash\nshift\nexec "$@"\n')
  (bin_dir / "t5x-like").write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
  for tool in ("srun", "t5x-like"):
    os.chmod(bin_dir / tool, 0o755)


def test_slurm_array_tasks_get_each_argument_unchanged(tmp_path, capsys):
  """Overrides with spaces, quotes, $(...) and JSON lists reach the trainer of each array
  task as the same arguments (the script run here with a stand-in srun); the #SBATCH
  values with spaces are quoted the way sbatch reads them."""
  import json
  import shlex
  import subprocess

  from t5x_like import sweep

  root = tmp_path / "sweep root"
  spec = sweep.Sweep(base="configs/tiny/gpt.py", root=str(root), runs=[
      {"mesh.rules": "custom", "mesh.custom_rules": [["batch", "data"], ["embed", None]]},
      {"data.train_files": "it's $(echo INJECTED) `x` \"q\" a;b"},
      {"data.train_files": "two\nlines \\n"}])  # one line of the commands file all the same
  runs = sweep.expand(spec)
  assert sweep.launch_slurm_array(spec, runs, dry_run=True) == 0
  out = capsys.readouterr().out
  script = out[out.index("#!/usr/bin/env bash"):]
  commands = out.split("\n")[0][2:-1]  # "# ROOT/commands-TIME.txt:"
  assert os.path.dirname(commands) == str(root) and os.path.basename(commands).startswith("commands-")
  (root).mkdir()
  with open(commands, "w") as f:
    f.write("\n".join(out.split("\n")[1:4]) + "\n")
  _fake_tools(tmp_path / "bin")
  env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}")
  for task, run in enumerate(runs):
    got = subprocess.run(["bash", "-c", script], env=dict(env, SLURM_ARRAY_TASK_ID=str(task)),
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(got) == ["train", "--config", "configs/tiny/gpt.py", "--workdir", run.workdir, *run.args()]
  bad = subprocess.run(["bash", "-c", script], env=dict(env, SLURM_ARRAY_TASK_ID="5"), capture_output=True, text=True)
  assert bad.returncode == 1 and "no command for array task 5" in bad.stderr
  output = next(line for line in script.splitlines() if line.startswith("#SBATCH --output="))
  assert shlex.split(output[len("#SBATCH "):]) == [f"--output={root}/slurm-%A_%a.out"]


def test_slurm_job_name_and_paths_with_spaces(capsys):
  assert cli.main(["launch", "slurm", "--config", "configs/tiny/gpt.py", "--workdir", "/tmp/x/my run",
                   "--dry-run"]) == 0
  out = capsys.readouterr().out
  assert "#SBATCH --job-name=my_run\n" in out
  assert '#SBATCH --output="/tmp/x/my run/slurm-%j.out"\n' in out
  assert "--workdir '/tmp/x/my run'" in out


def test_tpu_install_copies_the_checkout_and_names_the_config_from_it(tmp_path, monkeypatch, capsys):
  root = launch.checkout_root()
  monkeypatch.chdir(tmp_path)
  assert cli.main(["launch", "tpu", "--config", os.path.join(root, "configs/tiny/gpt.py"), "--workdir", "gs://b/r",
                   "--tpu", "t", "--zone", "z", "--install", "--dry-run"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith(f"gcloud compute tpus tpu-vm scp --recurse {root} ")
  assert "--config configs/tiny/gpt.py --workdir gs://b/r" in lines[2]
  (tmp_path / "mine.py").write_text("from t5x_like.config import Config\ndef get_config():\n  return Config()\n")
  assert cli.main(["launch", "tpu", "--config", "mine.py", "--workdir", "gs://b/r", "--tpu", "t", "--zone", "z",
                   "--install", "--dry-run"]) == 2
  assert f"the config mine.py is outside it; move or copy the config under {root}" in capsys.readouterr().err
