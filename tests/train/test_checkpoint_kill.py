"""SIGKILL (no handler runs, nothing is flushed) after a complete checkpoint and during an
async save: the next start resumes from the newest complete step and continues exactly."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

from t5x_like import config as C
from t5x_like.train.loop import run

SMALL = dict(model=dict(d_model=32, num_layers=2, num_heads=4, d_ff=64, vocab_size=512),
             data=dict(seq_len=32, synthetic_train_docs=500, synthetic_eval_docs=50),
             train=dict(batch_size=8, log_every=1, eval_every=0, eval_batches=0, skill_eval_examples=0),
             optimizer=dict(warmup_steps=2, learning_rate=3e-3),
             checkpoint=dict(every_steps=2, max_to_keep=5),
             mesh=dict(data=2, fsdp=2, tensor=2, rules="fsdp_tp"))  # as in test_checkpoint_restore.py


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  """A persistent compilation cache shared with test_checkpoint_restore.py and with the
  subprocesses here: they compile the same programs (same devices and config) once."""
  d = str(tmp_path_factory.getbasetemp() / "checkpoint_tests_jax_cache")
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  old = {n: getattr(jax.config, n) for n in names}
  for n, v in zip(names, (d, 0.0, 0), strict=True):
    jax.config.update(n, v)
  compilation_cache.reset_cache()
  yield d
  for n, v in old.items():
    jax.config.update(n, v)
  compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  d = tmp_path_factory.getbasetemp() / "checkpoint_tests_data"
  return {"corpus_dir": str(d / "corpus"), "tokenizer_path": str(d / "spm.model")}


def _cfg(steps, data):
  cfg = C.replace(C.load_config_file("configs/tiny/gpt.py"), **SMALL)
  return C.validate(C.replace(cfg, train=dict(steps=steps), data=data))


def _start(steps, data, wd, cache_dir):
  over = [f"--config.{s}.{k}={v}" for s, fields in SMALL.items() for k, v in fields.items()]
  over += [f"--config.data.{k}={v}" for k, v in data.items()] + [f"--config.train.steps={steps}"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_COMPILATION_CACHE_DIR=cache_dir,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  cmd = [sys.executable, "-m", "t5x_like.cli", "train", "--config", "configs/tiny/gpt.py", "--workdir", str(wd), *over]
  log = open(f"{wd}.log", "w")  # a file, not a pipe: nobody reads it while the run goes on
  proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
  proc.log = log
  return proc


def _wait_for(proc, predicate, what, timeout=240, poll=0.002):
  deadline = time.time() + timeout
  while not predicate():
    if proc.poll() is not None:
      raise AssertionError(f"run exited ({proc.returncode}) before {what}: {open(proc.log.name).read()[-3000:]}")
    assert time.time() < deadline, f"timed out waiting for {what}"
    time.sleep(poll)


def _kill(proc):
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=60)
  proc.log.close()


def _losses(workdir):
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return {r["step"]: r["loss"] for r in rows if "loss" in r}  # a rerun's rows come last and win


def _column(workdir, key):
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return {r["step"]: r[key] for r in rows if key in r}


def _steps(wd):
  return sorted(int(n) for n in os.listdir(wd / "checkpoints") if n.isdigit())


def test_sigkill_after_a_complete_checkpoint_resumes_exactly(tmp_path, data, cache_dir, capsys):
  """4 steps straight vs. SIGKILL once step 2's checkpoint is complete, then a rerun to 4:
  the losses of steps 3 and 4 are equal bit for bit."""
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  run(_cfg(4, data), str(straight))
  proc = _start(4, data, killed, cache_dir)
  _wait_for(proc, lambda: (killed / "checkpoints" / "2" / "commit_success.txt").exists(), "step 2 complete")
  _kill(proc)
  assert _steps(killed) == [2]
  capsys.readouterr()
  out = run(_cfg(4, data), str(killed))
  assert out["steps"] == 4 and "resumed from step 2" in capsys.readouterr().out
  a, b = _losses(straight), _losses(killed)
  assert [b[3], b[4]] == [a[3], a[4]]
  # ... because the resumed run read the same batches, not just similar ones.
  fa, fb = _column(straight, "batch_fingerprint"), _column(killed, "batch_fingerprint")
  assert [fb[3], fb[4]] == [fa[3], fa[4]] and fa[3] != fa[4]


def test_sigkill_during_an_async_save_falls_back_to_the_previous_step(tmp_path, data, cache_dir, capsys):
  """SIGKILL while step 4's save is still in its temporary directory (even this small state
  keeps it there for a few hundred milliseconds, far longer than polling and signalling
  take): the next start ignores and removes it, and resumes from step 2."""
  wd = tmp_path / "run"
  proc = _start(4, data, wd, cache_dir)
  ckpts = wd / "checkpoints"

  def saving_4():
    return ckpts.is_dir() and any(n.startswith("4.orbax-checkpoint-tmp") for n in os.listdir(ckpts))

  _wait_for(proc, saving_4, "step 4's save to start")
  _kill(proc)
  assert saving_4() and _steps(wd) == [2], os.listdir(ckpts)  # killed mid-save: 4 never finalized
  capsys.readouterr()
  out = run(_cfg(4, data), str(wd))
  assert out["steps"] == 4 and "resumed from step 2" in capsys.readouterr().out
  assert _steps(wd) == [2, 4] and not any("tmp" in n for n in os.listdir(ckpts))
