"""The feed checks every input before the first step: a bad eval glob, or eval files that
hold no document, stop the run at start-up with one DataError, before anything is trained
or written (it used to surface after training, losing the steps since the last save)."""

import os

import pytest

from t5x_like import config as C
from t5x_like.errors import DataError
from t5x_like.train.loop import run


def _cfg(corpus, spm_path, eval_files):
  cfg = C.replace(C.load_config_file("configs/tiny/gpt.py"),
                  model=dict(d_model=32, num_layers=1, num_heads=2, d_ff=64),
                  data=dict(source="text", train_files=corpus["train"], eval_files=eval_files,
                            tokenizer_path=spm_path, seq_len=32),
                  train=dict(steps=3, batch_size=8, eval_every=0, eval_batches=2, skill_eval_examples=0))
  return C.validate(cfg)


@pytest.mark.parametrize("kind", ["missing", "blank"])
def test_a_bad_eval_input_stops_the_run_before_the_first_step(tmp_path, corpus, spm_path, kind):
  if kind == "missing":
    evals, pattern = "/nowhere/eval-*.txt", r"no files match '/nowhere/eval-\*\.txt' \(set by data\.eval_files\)"
  else:
    (tmp_path / "eval.txt").write_text("\n   \n" * 30_000)
    evals, pattern = str(tmp_path / "eval.txt"), r"\(data\.eval_files\) contain no document"
  wd = tmp_path / "run"
  with pytest.raises(DataError, match=pattern):
    run(_cfg(corpus, spm_path, evals), str(wd))
  assert not os.path.exists(wd / "checkpoints") and not os.path.exists(wd / "metrics.jsonl")
  assert not os.path.exists(wd / "lock.json")  # released on the way out
