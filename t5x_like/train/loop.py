"""The training loop, read top to bottom: workdir -> mesh, abstract state and steps ->
data -> init or restore -> compile -> steps with hooks -> final hooks -> summary.
Periodic work lives in hooks.py, evaluation in evaluate.py, stop conditions in guards.py."""

from __future__ import annotations

import os
import time

import jax

from t5x_like import checkpoint
from t5x_like.config import Config, save_json
from t5x_like.data.prepare import prepare_data
from t5x_like.errors import NonFiniteError
from t5x_like.train.feed import Feed
from t5x_like.train.guards import NonFiniteGuard, StopFlag
from t5x_like.train.hooks import Run, ThroughputHook, default_hooks
from t5x_like.train.metrics import MetricsWriter
from t5x_like.train.setup import make_setup
from t5x_like.train.state import count_params, memory_report, sharding_table
from t5x_like.train.summary import write_summary

__all__ = ["NonFiniteError", "log", "run"]


def log(msg: str) -> None:
  if jax.process_index() == 0:
    print(msg, flush=True)


def run(cfg: Config, workdir: str, *, dry_run: bool = False) -> dict:
  t_start = time.time()
  # Workdir: the resolved config is written first.
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    save_json(cfg, os.path.join(workdir, "config.json"))

  # Mesh, abstract state, shardings and the jitted steps.
  setup = make_setup(cfg)
  n_params = count_params(setup.abstract_params)
  log(f"[t5x_like] {jax.process_count()} process(es), {jax.device_count()} {jax.devices()[0].platform} "
      f"device(s), mesh {dict(setup.mesh.shape)}, rules {cfg.mesh.rules}")
  log(f"[t5x_like] model {cfg.model.family}: {n_params:,} parameters")
  log(sharding_table(setup))
  log(memory_report(setup))
  if dry_run:
    return {"params": n_params}

  # Data: this host's pipeline over its share of the inputs.
  files = prepare_data(cfg, workdir, log)
  feed = Feed(cfg, files, setup.batch_sharding)

  # Init or restore, straight into the shardings.
  ckpt, start = checkpoint.start(cfg, workdir, setup, feed.train_iterator, log)

  # Compile the step once, on the first batch.
  rng = jax.random.key(cfg.train.seed + 1)
  t0 = time.time()
  end_step = min(cfg.train.stop_at_step or cfg.train.steps, cfg.train.steps)
  first = feed.next_train() if start.step < end_step else None
  compiled = setup.train_step.lower(start.state, feed.global_batch(first), rng).compile() if first else None
  compile_s = time.time() - t0
  if compiled is not None:
    log(f"[t5x_like] compiled train step in {compile_s:.1f}s")

  # Steps, with the periodic work in hooks.
  state = Run(cfg, workdir, setup, feed, ckpt, MetricsWriter(workdir), log, start.state, start.step,
              end_step, start.tokens_seen, start_step=start.step)
  hooks = default_hooks(cfg, files.tokenizer)
  if train_steps(state, compiled, first, rng, hooks):
    return {"preempted": True, "step": state.step}

  # Final eval, skill score, final checkpoint and the summary.
  final = {}
  for hook in hooks:
    hook.finish(state, final)
  if ckpt is not None:
    ckpt.close()
  state.writer.close()
  throughput = next(h for h in hooks if isinstance(h, ThroughputHook)).summary()
  summary = {"steps": state.step, "final_train_loss": throughput.pop("final_train_loss"), **final,
             **throughput, "compile_s": compile_s, "wall_s": time.time() - t_start, "params": n_params,
             "workdir": workdir, "checkpoints": ckpt.directory if ckpt else None,
             "metrics": os.path.join(workdir, "metrics.jsonl"),
             "tensorboard": os.path.join(workdir, "tensorboard")}
  return write_summary(summary, files, log)


def train_steps(run: Run, compiled, batch: dict | None, rng, hooks) -> bool:
  """Runs steps up to `run.end_step`; True when a stop request ended the run early (the
  current step was saved). A streak of non-finite steps saves and raises NonFiniteError."""
  stop, guard = StopFlag(), NonFiniteGuard(run.cfg.train.max_consecutive_nonfinite)
  stop.install()
  try:
    while run.step < run.end_step:
      batch = batch if batch is not None else run.feed.next_train()
      for hook in hooks:
        hook.before_step(run, batch)
      run.state, run.metrics = compiled(run.state, run.feed.global_batch(batch), rng)
      batch, run.step = None, run.step + 1
      diverged = guard.push(run.step, run.metrics["skipped"])
      row = {}
      for hook in hooks:
        if hook.due(run):
          hook.after_step(run, row)
      for hook in hooks:
        hook.end_step(run)
      if diverged:
        _stop_nonfinite(run, guard)
      if stop.agreed(run.step):
        log(f"[t5x_like] {stop.reason} received: saving step {run.step} and stopping")
        run.save(force=True)
        _close(run)
        log(f"[t5x_like] checkpoint for step {run.step} is complete; rerun the same command to resume")
        return True
  finally:
    stop.uninstall()
  if guard.flush():
    _stop_nonfinite(run, guard)
  return False


def _close(run: Run) -> None:
  if run.ckpt is not None:
    run.ckpt.close()
  run.writer.close()


def _stop_nonfinite(run: Run, guard: NonFiniteGuard) -> None:
  run.save(force=True)
  _close(run)
  where = (f"saved step {run.step} in {run.ckpt.directory}" if run.ckpt
           else "checkpointing is off, nothing was saved")
  raise guard.error(run.step, where, run.cfg.optimizer.learning_rate)
