"""Sweeps: expansion into named runs with every config checked first, and a local sweep of
4 tiny runs (2 learning rates x 2 widths) to completion, a rerun that trains nothing, and
the runs table and plot read back against the runs' own files."""

import json
import os

import pytest

from t5x_like import cli
from t5x_like.errors import ConfigError
from t5x_like.runs import find_runs, plot, read_run
from t5x_like.sweep import Sweep, expand, run_name

TINY = "configs/tiny/gpt.py"


def test_expansion_names_runs_and_checks_every_config_first(tmp_path):
  runs = expand(Sweep(base=TINY, root=str(tmp_path), grid={"optimizer.learning_rate": [1e-3, 3e-3],
                                                           "model.d_model": [64, 128]}, fixed={"train.steps": 5}))
  assert [r.name for r in runs] == ["learning_rate=0.001,d_model=64", "learning_rate=0.001,d_model=128",
                                    "learning_rate=0.003,d_model=64", "learning_rate=0.003,d_model=128"]
  assert runs[0].overrides == {"train.steps": 5, "optimizer.learning_rate": 1e-3, "model.d_model": 64}
  assert runs[3].workdir == os.path.join(str(tmp_path), "learning_rate=0.003,d_model=128")
  assert run_name({"data.train_files": "a/*.txt"}) == "train_files=a__.txt"
  with pytest.raises(ConfigError, match=r"sweep run learning_rat=0.001: unknown config key 'optimizer.learning_rat'"):
    expand(Sweep(base=TINY, grid={"optimizer.learning_rat": [1e-3]}))
  with pytest.raises(ConfigError, match=r"sweep run d_model=65: model.d_model=65 is not divisible"):
    expand(Sweep(base=TINY, runs=[{"model.d_model": 64}, {"model.d_model": 65}]))
  with pytest.raises(ConfigError, match=r"grid entries \['model.d_model'\] have no values"):
    expand(Sweep(base=TINY, grid={"model.d_model": []}))
  with pytest.raises(ConfigError, match="the sweep has no runs"):
    expand(Sweep(base=TINY))


def _sweep_with_a_finished_run(tmp_path, rates, steps):
  """tmp_path/s.py sweeping learning rates `rates` at train.steps=`steps`, and the run of
  1e-3 marked finished (its folder returned)."""
  (tmp_path / "s.py").write_text(
      "from t5x_like.sweep import Sweep\n"
      f"def get_sweep():\n  return Sweep(base={TINY!r}, root={str(tmp_path / 'root')!r},\n"
      f"               grid={{'optimizer.learning_rate': {rates!r}}}, fixed={{'train.steps': {steps}}})\n")
  done = tmp_path / "root" / "learning_rate=0.001"
  done.mkdir(parents=True)
  (done / "status.json").write_text('{"status": "finished"}')
  return done


def test_dry_run_prints_each_unfinished_run_and_the_slurm_array(tmp_path, capsys):
  _sweep_with_a_finished_run(tmp_path, [1e-3, 3e-3], 7)
  assert cli.main(["sweep", str(tmp_path / "s.py"), "--dry-run"]) == 0
  out = capsys.readouterr().out
  assert "2 run(s)" in out and "1 finished, 1 to run" in out and "# learning_rate=0.003" in out
  assert "--config.train.steps=7 --config.optimizer.learning_rate=0.003" in out and "learning_rate=0.001\n" not in out
  assert cli.main(["sweep", str(tmp_path / "s.py"), "--launcher", "slurm", "--dry-run", "--gpus-per-node", "1"]) == 0
  out = capsys.readouterr().out
  assert "#SBATCH --array=0-0" in out and "t5x-like train --config configs/tiny/gpt.py --workdir" in out
  assert not (tmp_path / "root" / "learning_rate=0.003").exists()  # a dry run starts and writes nothing


@pytest.mark.slow  # 4 training processes, about 1-3 minutes on 2 cores
def test_local_sweep_runs_once_and_the_table_matches_the_runs(tmp_path, corpus, spm_path, capsys):
  fixed = {"train.steps": 6, "train.batch_size": 8, "train.log_every": 2, "train.eval_every": 3,
           "train.eval_batches": 1, "train.skill_eval_examples": 0, "data.seq_len": 32, "model.num_layers": 1,
           "model.num_heads": 2, "model.d_ff": 64, "checkpoint.every_steps": 3, "data.source": "text",
           "data.train_files": corpus["train"], "data.eval_files": corpus["eval"], "data.tokenizer.path": spm_path}
  root = tmp_path / "sweep"
  (tmp_path / "s.py").write_text(
      "from t5x_like.sweep import Sweep\n"
      f"def get_sweep():\n  return Sweep(base={TINY!r}, root={str(root)!r}, fixed={fixed!r},\n"
      "               grid={'optimizer.learning_rate': [1e-3, 3e-3], 'model.d_model': [32, 64]})\n")
  assert cli.main(["sweep", str(tmp_path / "s.py"), "--parallel", "2"]) == 0
  out = capsys.readouterr().out
  assert "4 run(s)" in out and sum(line.endswith(" finished") for line in out.splitlines()) == 4, out
  stamps = {p: os.path.getmtime(os.path.join(p, "metrics.jsonl")) for p in find_runs(str(root))}
  assert len(stamps) == 4
  assert cli.main(["sweep", str(tmp_path / "s.py"), "--parallel", "2"]) == 0  # nothing left to train
  assert "4 finished, 0 to run" in capsys.readouterr().out
  assert stamps == {p: os.path.getmtime(os.path.join(p, "metrics.jsonl")) for p in stamps}
  runs = [read_run(p, str(root)) for p in sorted(stamps)]
  for r in runs:
    rows = [json.loads(line) for line in open(os.path.join(r.path, "metrics.jsonl"))]
    last = [x for x in rows if "train_loss_avg" in x][-1]
    assert (r.status, r.step, r.tokens_seen, r.train_loss) == ("finished", 6, last["tokens_seen"], last["train_loss_avg"])
    assert r.best_eval_loss == min(x["eval_loss"] for x in rows if "eval_loss" in x)
    assert json.load(open(os.path.join(r.path, "config.json")))["optimizer"]["learning_rate"] in (1e-3, 3e-3)
  labels = plot(runs, str(tmp_path / "loss.png"))
  assert len(labels) == 8 and sum(label.endswith(" eval") for label in labels) == 4
  assert os.path.getsize(tmp_path / "loss.png") > 10_000


def test_the_base_config_is_found_from_the_sweep_files_folder(tmp_path, monkeypatch):
  """configs/sweeps/x.py names configs/tiny/gpt.py relative to the project: run from
  elsewhere, the base is found from the sweep file's folder upwards; a base found nowhere is
  one plain error naming both places."""
  from t5x_like.sweep import load_sweep

  sweep_file = os.path.abspath("configs/sweeps/tiny_lr_width.py")
  monkeypatch.chdir(tmp_path)
  sweep = load_sweep(sweep_file)
  assert sweep.base == os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(sweep_file))), "configs/tiny/gpt.py")
  expand(sweep)  # every run's config builds from there
  (tmp_path / "s.py").write_text("from t5x_like.sweep import Sweep\n"
                                 "def get_sweep():\n  return Sweep(base='configs/nope.py', grid={'train.steps': [1]})\n")
  with pytest.raises(ConfigError, match=r"base config 'configs/nope.py' is found neither from the current directory"):
    load_sweep(str(tmp_path / "s.py"))


def test_a_finished_run_whose_config_changed_runs_again(tmp_path, capsys):
  """A run finished with train.steps=7, the sweep file since raised it to 9: the run is not
  skipped (its trainer resumes to 9), and the line says what changed. The same config as
  saved is skipped."""
  from t5x_like.config import build_config, to_dict

  done = _sweep_with_a_finished_run(tmp_path, [1e-3], 9)
  saved = to_dict(build_config(TINY, ["--config.train.steps=7", "--config.optimizer.learning_rate=0.001"]))
  (done / "config.json").write_text(json.dumps(saved))
  assert cli.main(["sweep", str(tmp_path / "s.py"), "--dry-run"]) == 0
  out = capsys.readouterr().out
  assert "learning_rate=0.001 asks for more steps than it finished (train.steps: 7 -> 9); it resumes" in out
  assert "0 finished, 1 to run" in out
  # Another change (not more steps) would resume at the last step and train nothing: not rerun, said.
  saved["train"]["steps"], saved["optimizer"]["warmup_steps"] = 9, 1
  del saved["train"]["log_every"]  # fields only one side has (another version) are no change
  saved["train"]["removed_field"] = 5
  (done / "config.json").write_text(json.dumps(saved))
  assert cli.main(["sweep", str(tmp_path / "s.py"), "--dry-run"]) == 0
  out = capsys.readouterr().out
  assert "1 finished, 0 to run" in out and "finished with another config than this sweep now gives it" in out
  assert "optimizer.warmup_steps: 1 -> " in out and "removed_field" not in out and "log_every" not in out


def test_sweep_file_mistakes_are_one_line(tmp_path, capsys):
  with pytest.raises(ConfigError, match=r"grid entries \['train.steps'\] are single values; give each key a list"):
    expand(Sweep(base=TINY, grid={"train.steps": 5}))
  names = [r.name for r in expand(Sweep(base=TINY, grid={"data.train_files": ["caf\u00e9", "caf\u00e8"]}))]
  assert len(set(names)) == 2 and names[0] == "train_files=caf_"  # the second gets a digest
  with pytest.raises(ConfigError, match="have the same overrides"):
    expand(Sweep(base=TINY, runs=[{"train.steps": 3}, {"train.steps": 3}]))
  long = run_name({f"model.key_{i}": "x" * 20 for i in range(12)})
  assert len(long) == 120 and long != run_name({f"model.key_{i}": "x" * 20 for i in range(13)})
  (tmp_path / "s.py").write_text("from t5x_like.sweep import Sweep\n"
                                 f"def get_sweep():\n  return Sweep(base={TINY!r}, gird={{'train.steps': [1]}})\n")
  assert cli.main(["sweep", str(tmp_path / "s.py"), "--dry-run"]) == 2
  err = capsys.readouterr().err
  assert "get_sweep() failed" in err and "'gird'" in err and "Sweep takes base, grid, runs, fixed and root" in err
  (tmp_path / "s.py").write_text("from t5x_like.sweep import Sweep\n"
                                 f"def get_sweep():\n  return Sweep(base={TINY!r}, grid={{'train.steps': [1]}})\n")
  assert cli.main(["sweep", str(tmp_path / "s.py"), "--processes", "2", "--dry-run"]) == 2
  assert "--processes is for `t5x-like launch local`" in capsys.readouterr().err
  assert cli.main(["sweep", str(tmp_path / "s.py"), "--devices", "2", "--dry-run"]) == 0
  assert "--cpu-devices 2" in capsys.readouterr().out
