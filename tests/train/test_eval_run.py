"""`t5x-like eval` reproduces the training loop's own final eval loss exactly, evaluates
every kept step with --all-checkpoints, and says plainly when there is nothing to evaluate."""

import json
import math
import os
import shutil

import pytest
from checkpoint_runs import small_cfg, small_overrides  # tests/train/checkpoint_runs.py

from t5x_like import cli
from t5x_like.train.loop import run

pytestmark = pytest.mark.usefixtures("cache_dir")  # tests/train/conftest.py


def _rows(wd, split="eval"):
  return [json.loads(line) for line in open(wd / "eval" / split / "metrics.jsonl")]


def test_eval_reproduces_the_final_eval_and_covers_every_checkpoint(tmp_path, data, capsys, monkeypatch):
  wd = tmp_path / "run"
  summary = run(small_cfg(4, data, train=dict(eval_batches=2)), str(wd))
  # The run's own config.json is the default config: nothing else to pass.
  assert cli.main(["eval", "--workdir", str(wd)]) == 0
  (row,) = _rows(wd)
  assert row["step"] == 4 and row["eval_loss"] == summary["eval_loss"]  # bit for bit
  assert row["eval_accuracy"] == summary["eval_accuracy"] and row["eval_tokens"] == summary["eval_tokens"]
  assert row["eval_perplexity"] == pytest.approx(math.exp(row["eval_loss"]))
  assert os.listdir(wd / "eval" / "eval" / "tensorboard")
  assert cli.main(["eval", "--workdir", str(wd), "--all-checkpoints"]) == 0
  rows = _rows(wd)[1:]
  assert [r["step"] for r in rows] == [2, 4] and rows[1]["eval_loss"] == summary["eval_loss"]
  assert rows[0]["eval_loss"] > rows[1]["eval_loss"]  # step 2 is earlier in training
  out = capsys.readouterr().out
  assert "step       2 | eval loss" in out and "perplexity" in out
  # Another checkpoint, another split, a config file with overrides.
  args = ["eval", "--workdir", str(wd), "--config", "configs/tiny/gpt.py", *small_overrides(data),
          "--checkpoint", str(wd / "checkpoints" / "2"), "--split", "train", "--batches", "1"]
  assert cli.main(args) == 0
  (train_row,) = _rows(wd, "train")
  assert train_row["step"] == 2 and train_row["eval_tokens"] > 0
  # The run's config names a mesh these devices cannot form (trained elsewhere): eval shards
  # the batch over the devices here instead, with the same loss.
  saved = json.load(open(wd / "config.json"))
  saved["mesh"].update(data=16, fsdp=1, tensor=1)
  (wd / "config.json").write_text(json.dumps(saved))
  capsys.readouterr()
  assert cli.main(["eval", "--workdir", str(wd)]) == 0
  assert "the run's mesh (data=16, fsdp=1, tensor=1) does not fit the 8 device(s) here" in capsys.readouterr().out
  assert _rows(wd)[-1]["eval_loss"] == summary["eval_loss"]
  # A config of another family is named as such, before anything is built.
  assert cli.main(["eval", "--workdir", str(wd), "--config", "configs/tiny/bert.py"]) == 2
  assert "holds a decoder model but the config is for the encoder family" in capsys.readouterr().err
  # A step the training run's retention removes after --all-checkpoints listed it is
  # passed over with a line; the others are evaluated.
  from t5x_like.train import eval_run

  listed = eval_run.checkpoints_to_evaluate

  def then_removed(*args):
    dirs = listed(*args)
    shutil.rmtree(dirs[0])
    return dirs

  monkeypatch.setattr(eval_run, "checkpoints_to_evaluate", then_removed)
  capsys.readouterr()
  assert cli.main(["eval", "--workdir", str(wd), "--all-checkpoints"]) == 0
  out = capsys.readouterr().out
  assert f"skipping {wd / 'checkpoints' / '2'}: it was removed while this evaluation ran" in out
  assert _rows(wd)[-1]["step"] == 4 and _rows(wd)[-1]["eval_loss"] == summary["eval_loss"]


def test_eval_without_checkpoints_is_one_line(tmp_path, data, capsys):
  wd = tmp_path / "empty"
  args = ["eval", "--workdir", str(wd), "--config", "configs/tiny/gpt.py", *small_overrides(data)]
  assert cli.main(args) == 2
  err = capsys.readouterr().err.strip()
  assert err == f"error: no checkpoint in {wd / 'checkpoints'}; train first, or pass --checkpoint PATH"
  assert cli.main(["eval", "--workdir", str(wd)]) == 2
  assert "config.json not found; pass the run's --config" in capsys.readouterr().err
