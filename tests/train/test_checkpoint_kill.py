"""SIGKILL (no handler runs, nothing is flushed) after a complete checkpoint and during an
async save: the next start resumes from the newest complete step and continues exactly."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
from checkpoint_runs import (  # tests/train/checkpoint_runs.py
  MESH_222,
  column,
  small_cfg,
  small_overrides,
)

from t5x_like.train.loop import run


def _start(steps, data, wd, cache_dir):
  over = small_overrides(data, mesh=MESH_222) + [f"--config.train.steps={steps}"]
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


def _steps(wd):
  return sorted(int(n) for n in os.listdir(wd / "checkpoints") if n.isdigit())


def test_sigkill_after_a_complete_checkpoint_resumes_exactly(tmp_path, data, cache_dir, capsys):
  """4 steps straight vs. SIGKILL once step 2's checkpoint is complete, then a rerun to 4:
  the losses of steps 3 and 4 are equal bit for bit."""
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  run(small_cfg(4, data, mesh=MESH_222), str(straight))
  proc = _start(4, data, killed, cache_dir)
  _wait_for(proc, lambda: (killed / "checkpoints" / "2" / "commit_success.txt").exists(), "step 2 complete")
  _kill(proc)
  assert _steps(killed) == [2]
  capsys.readouterr()
  out = run(small_cfg(4, data, mesh=MESH_222), str(killed))
  assert out["steps"] == 4 and "resumed from step 2" in capsys.readouterr().out
  a, b = column(straight), column(killed)
  assert [b[3], b[4]] == [a[3], a[4]]
  # ... because the resumed run read the same batches, not just similar ones.
  fa, fb = column(straight, "batch_fingerprint"), column(killed, "batch_fingerprint")
  assert [fb[3], fb[4]] == [fa[3], fa[4]] and fa[3] != fa[4]
  # The step written by 8 devices reads on one (what infer, score and convert do): the same
  # params, checksummed, as read here on the 8.
  from t5x_like.checkpoint.params import read_params

  params, _ = read_params(str(straight / "checkpoints" / "4"))
  want = sorted((jax.tree_util.keystr(k), float(np.sum(v, dtype=np.float64)))
                for k, v in jax.tree_util.tree_leaves_with_path(params))
  code = ("import sys, json, jax, numpy as np; from t5x_like.checkpoint.params import read_params; "
          "p, _ = read_params(sys.argv[1]); assert jax.device_count() == 1; print(json.dumps(sorted("
          "(jax.tree_util.keystr(k), float(np.sum(v, dtype=np.float64))) for k, v in jax.tree_util.tree_leaves_with_path(p))))")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  out = subprocess.run([sys.executable, "-c", code, str(straight / "checkpoints" / "4")], env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert [tuple(x) for x in json.loads(out.stdout.strip().splitlines()[-1])] == want


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
  out = run(small_cfg(4, data, mesh=MESH_222), str(wd))
  assert out["steps"] == 4 and "resumed from step 2" in capsys.readouterr().out
  assert _steps(wd) == [2, 4] and not any("tmp" in n for n in os.listdir(ckpts))
