"""End to end through the real pipeline, Orbax and the CLI, on a very small model."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from t5x_like import config as C
from t5x_like.train.loop import run

SMALL = dict(model=dict(d_model=64, num_layers=2, num_heads=4, d_ff=128, vocab_size=512),
             data=dict(seq_len=64, synthetic_train_docs=2000, synthetic_eval_docs=200),
             train=dict(batch_size=8, log_every=1, eval_every=5, eval_batches=2, skill_eval_examples=8),
             optimizer=dict(warmup_steps=5, learning_rate=3e-3),
             checkpoint=dict(every_steps=5, async_save=True))


def _cfg(steps, **extra):
  cfg = C.replace(C.load_config_file("configs/tiny/gpt.py"), **SMALL)
  cfg = C.replace(cfg, train=dict(steps=steps))
  for section, values in extra.items():
    cfg = C.replace(cfg, **{section: values})
  return C.validate(cfg)


def _losses(workdir):
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """One corpus and tokenizer for every run here (as a user would reuse them)."""
  d = tmp_path_factory.mktemp("shared")
  return {"corpus_dir": str(d / "corpus")}


def test_train_writes_metrics_tensorboard_checkpoint_and_summary(tmp_path, corpus, capsys):
  wd = str(tmp_path / "run")
  summary = run(_cfg(10, data=corpus), wd)
  assert summary["steps"] == 10
  # The wait for the first batch and the compile, reported apart.
  start_line = next(line for line in capsys.readouterr().out.splitlines() if "compiled train step in" in line)
  assert "first batch in" in start_line and 0 <= summary["first_batch_s"] < summary["wall_s"]
  rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
  step_rows = [r for r in rows if "loss" in r]
  assert [r["step"] for r in step_rows] == list(range(1, 11))
  for key in ("loss", "learning_rate", "grad_norm", "tokens_per_s", "step_time_s", "mfu"):
    assert all(np.isfinite(r[key]) for r in step_rows), key
  assert any("eval_loss" in r for r in rows)
  assert os.listdir(os.path.join(wd, "tensorboard"))
  assert json.load(open(os.path.join(wd, "config.json")))["train"]["steps"] == 10
  assert sorted(int(s) for s in os.listdir(os.path.join(wd, "checkpoints")) if s.isdigit()) == [5, 10]
  assert set(json.load(open(os.path.join(wd, "summary.json")))) >= {"eval_loss", "tokens_per_s", "skill_accuracy"}
  # Causal-LM rows are concatenated documents: all slots but the stream's end hold tokens.
  assert all(r["packing"] > 0.95 for r in step_rows) and summary["packing"] > 0.95


@pytest.mark.slow  # 70 s; test_checkpoint_kill's SIGKILL resume checks exactness in the fast suite
def test_resume_continues_exactly(tmp_path, corpus):
  """Train 10 straight vs stop at 5 then rerun to 10 in the same workdir: same losses bit
  for bit (same schedule, restored optimizer state and data iterator)."""
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  run(_cfg(10, data=corpus), straight)
  run(_cfg(10, data=corpus, train=dict(stop_at_step=5)), resumed)
  out = run(_cfg(10, data=corpus), resumed)
  assert out["steps"] == 10
  a, b = _losses(straight), _losses(resumed)
  assert [a[s] for s in range(6, 11)] == [b[s] for s in range(6, 11)]


def test_cli_user_errors_are_one_line(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  cmd = [sys.executable, "-m", "t5x_like.cli", "train", "--config", "configs/tiny/gpt.py", "--workdir",
         str(tmp_path)]
  for extra, expect in [(["--config.optimizer.learnin_rate=1"], "did you mean 'optimizer.learning_rate'"),
                        (["--config.mesh.data=3"], "mesh data=3"),
                        (["--config.data.source=text", "--config.data.train_files=/nope/*.txt",
                          "--config.data.tokenizer_path=/nope/spm.model"], "/nope")]:
    p = subprocess.run(cmd + extra, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and expect in p.stderr, p.stderr


def test_dry_run_prints_table_and_memory_without_training(tmp_path, capsys):
  out = run(_cfg(10), str(tmp_path / "dry"), dry_run=True)
  text = capsys.readouterr().out
  assert out == {"params": out["params"]} and out["params"] > 0
  assert "stack/blocks/self_attn/wq" in text and "per-device memory" in text
  assert "remat auto (dots), attention auto (chunked)" in text  # the defaults, resolved for CPU
  assert not os.path.exists(tmp_path / "dry" / "checkpoints")


def test_roll_encoder_rows_pairs_each_target_with_another_input():
  from t5x_like.models.encoder_decoder import roll_encoder_rows
  batch = {"encoder_input_tokens": np.arange(6).reshape(3, 2), "encoder_segment_ids": np.ones((3, 2)),
           "decoder_target_tokens": np.arange(6).reshape(3, 2)}
  out = roll_encoder_rows(batch)
  np.testing.assert_array_equal(out["encoder_input_tokens"], [[4, 5], [0, 1], [2, 3]])
  np.testing.assert_array_equal(out["decoder_target_tokens"], batch["decoder_target_tokens"])


@pytest.mark.slow  # 57 s end to end; tests/test_workdir.py checks the lock itself
def test_a_second_trainer_on_the_same_workdir_is_refused(tmp_path, corpus):
  """Two `t5x-like train` on one workdir: the second exits 2 with one line naming the first
  (its pid); the first finishes, its config.json and metrics.jsonl are its own alone."""
  wd = tmp_path / "run"
  args = [sys.executable, "-m", "t5x_like.cli", "train", "--config", "configs/tiny/gpt.py", "--workdir", str(wd),
          *[f"--config.{s}.{k}={v}" for s, f in SMALL.items() for k, v in f.items()],
          f"--config.data.corpus_dir={corpus['corpus_dir']}", "--config.train.steps=12"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  for line in first.stdout:  # wait until the first trainer holds the workdir
    if "compiled train step" in line:
      break
  second = subprocess.run(args[:-1] + ["--config.train.steps=99"], env=env, capture_output=True, text=True,
                          timeout=300)
  rest = first.stdout.read()
  assert first.wait(timeout=300) == 0, rest
  assert second.returncode == 2, second.stderr
  err = [line for line in second.stderr.strip().splitlines() if line.startswith("error:")]
  assert len(err) == 1 and f"pid {first.pid}" in err[0] and "in use by another trainer" in err[0], second.stderr
  assert "Traceback" not in second.stderr
  assert "parameters" not in second.stdout, second.stdout  # refused before describing the model
  assert json.load(open(wd / "config.json"))["train"]["steps"] == 12  # not the refused run's 99
  assert sorted(_losses(str(wd))) == list(range(1, 13))
  assert not (wd / "lock.json").exists()
