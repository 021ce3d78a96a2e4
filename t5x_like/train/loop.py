"""The training loop, read top to bottom: mesh, abstract state and steps -> workdir and
lock -> data -> init or restore -> config.json -> compile -> steps with hooks -> final
checkpoint -> final hooks -> summary. Periodic work lives in hooks.py, evaluation in
evaluate.py, stop conditions in guards.py, the workdir and its lock in workdir.py."""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from t5x_like import checkpoint
from t5x_like.config import Config, to_dict
from t5x_like.data.prepare import prepare_data
from t5x_like.errors import NonFiniteError
from t5x_like.runtime import rules_from_config, unused_mesh_axes
from t5x_like.train.feed import Feed
from t5x_like.train.guards import NonFiniteGuard, StopRequested
from t5x_like.train.hooks import Run, ThroughputHook, default_hooks
from t5x_like.train.metrics import MetricsWriter
from t5x_like.train.setup import attention_label, make_setup, remat_label
from t5x_like.train.state import count_params, memory_report, sharding_table
from t5x_like.train.summary import write_summary
from t5x_like.workdir import Session, write_json

__all__ = ["NonFiniteError", "log", "run"]


def log(msg: str) -> None:
  if jax.process_index() == 0:
    print(msg, flush=True)


def run(cfg: Config, workdir: str, *, dry_run: bool = False) -> dict:
  t_start = time.time()
  # Mesh, abstract state, shardings and the jitted steps; a dry run stops here, writing nothing.
  setup = make_setup(cfg)
  n_params = count_params(setup.abstract_params)
  if dry_run:
    _describe(cfg, setup, n_params)
    return {"params": n_params}

  with Session(workdir, log) as session:  # the workdir checked and locked; signals set a stop flag
    _describe(cfg, setup, n_params)  # after the lock: a second trainer on this workdir prints only why it stops
    try:
      files, feed, ckpt, start, end_step, rng, first, compiled, (data_s, compile_s) = _start_up(cfg, session, setup)
    except StopRequested as stop:
      session.status("preempted")
      log(f"[t5x_like] {stop}: stopped before the first step, nothing new to save; rerun the same "
          "command to start")
      return {"preempted": True, "step": None}

    # Steps, with the periodic work in hooks.
    guard = NonFiniteGuard(cfg.train.max_consecutive_nonfinite, start.nonfinite_count, start.nonfinite_last,
                           every=cfg.train.log_every)
    session.stop.every = cfg.train.log_every  # processes agree on a signal at logging steps
    state = Run(cfg, session.path, setup, feed, ckpt, MetricsWriter(session.path), log, start.state,
                start.step, end_step, start.tokens_seen, session.stop, guard, start_step=start.step,
                session=session, window_losses=[np.float32(x) for x in start.train_window])
    hooks = default_hooks(cfg, files.tokenizer)
    log(f"[t5x_like] MFU against {next(h for h in hooks if isinstance(h, ThroughputHook)).peak_device.describe()}")
    try:
      train_steps(state, compiled, first, rng, hooks)
      # The final checkpoint first, so a stop or a failure in the final eval loses no step.
      state.save(final=True)
      final = {}
      for hook in hooks:
        hook.finish(state, final)
      session.check_owner("writing the run's summary")
    except StopRequested:
      state.close()
      session.status("preempted", step=state.step)
      log(f"[t5x_like] checkpoint for step {state.step} is complete; rerun the same command to "
          f"{'resume' if state.step < end_step else 'redo the final evaluation'}")
      return {"preempted": True, "step": state.step}
    except BaseException:
      state.close()  # an error mid-run (a bad record, say) still lets a save in flight finish
      raise
    state.close()
    session.status("finished", step=state.step)
    throughput = next(h for h in hooks if isinstance(h, ThroughputHook)).summary(state)
    summary = {"steps": state.step, "final_train_loss": throughput.pop("final_train_loss"), **final,
               **throughput, "compile_s": compile_s, "first_batch_s": data_s, "wall_s": time.time() - t_start,
               "params": n_params,
               "workdir": session.path, "checkpoints": ckpt.directory if ckpt else None,
               "metrics": os.path.join(session.path, "metrics.jsonl"),
               "tensorboard": os.path.join(session.path, "tensorboard")}
    return write_summary(summary, log)


def _describe(cfg: Config, setup, n_params: int) -> None:
  log(f"[t5x_like] {jax.process_count()} process(es), {jax.device_count()} {jax.devices()[0].platform} "
      f"device(s), mesh {dict(setup.mesh.shape)}, rules {cfg.mesh.rules}")
  idle = unused_mesh_axes(dict(setup.mesh.shape), rules_from_config(cfg.mesh))
  if idle:
    sizes = ", ".join(f"mesh.{a}={setup.mesh.shape[a]}" for a in idle)
    log(f"[t5x_like] warning: rules {cfg.mesh.rules} shard nothing over {sizes}: every array is replicated "
        f"along it and those devices repeat each other's work; use rules fsdp_tp or tp for a tensor axis, "
        f"or move the devices to mesh.data")
  log(f"[t5x_like] model {cfg.model.family}: {n_params:,} parameters, {cfg.model.dtype}, "
      f"remat {remat_label(cfg, setup)}, attention {attention_label(cfg, setup)}")
  log(sharding_table(setup))
  log(memory_report(setup))


def _start_up(cfg: Config, session: Session, setup):
  """Data, init or restore, config.json, the first batch and the compiled step. A stop
  signal meanwhile raises StopRequested between these phases, and at once while the first
  batch or the compile is under way: both block in C++, for minutes on a large input or a
  large model, and would otherwise hold the signal until the first step was done."""
  stop = session.stop
  # Data: every input checked, then this host's pipeline over its share.
  # Under the stop flag: a tokenizer trained here (or a large corpus written) takes minutes.
  files = stop.unless_stopped(lambda: prepare_data(cfg, session.path, log), "preparing the data")
  feed = Feed(cfg, files, setup.batch_sharding)
  stop.check("building the input pipeline")

  # Init or restore, straight into the shardings; only then does config.json describe the run.
  ckpt, start = checkpoint.start(cfg, session.path, setup, feed, log)
  try:
    stop.check("restoring" if start.step else "initialising")
    if jax.process_index() == 0:
      write_json(os.path.join(session.path, "config.json"), to_dict(cfg))

    # Compile the step once, on the first batch.
    rng = jax.random.key(cfg.train.seed + 1)
    t0 = time.time()
    end_step = min(cfg.train.stop_at_step or cfg.train.steps, cfg.train.steps)
    first = stop.unless_stopped(feed.next_train, "reading the first batch") if start.step < end_step else None
    data_s, t0 = time.time() - t0, time.time()
    compiled = None
    if first is not None:
      batch = feed.global_batch(first)
      compiled = stop.unless_stopped(lambda: setup.train_step.lower(start.state, batch, rng).compile(),
                                     "compiling the train step")
    compile_s = time.time() - t0
    if compiled is not None:
      # The two apart: a large input's shuffle buffer can take longer to fill than the compile.
      log(f"[t5x_like] first batch in {data_s:.1f}s, compiled train step in {compile_s:.1f}s")
  except BaseException:
    if ckpt is not None:
      ckpt.close()
    raise
  return files, feed, ckpt, start, end_step, rng, first, compiled, (data_s, compile_s)


def train_steps(run: Run, compiled, batch: dict | None, rng, hooks) -> None:
  """Runs steps up to `run.end_step`. A stop request saves the current step and raises
  StopRequested; a streak of non-finite steps saves and raises NonFiniteError."""
  while run.step < run.end_step:
    batch = batch if batch is not None else run.feed.next_train()
    for hook in hooks:
      hook.before_step(run, batch)
    run.state, run.metrics = compiled(run.state, run.feed.global_batch(batch), rng)
    batch, run.step = None, run.step + 1
    run.tokens_seen += run.cfg.train.batch_size * run.cfg.data.seq_len
    run.window_losses.append(run.metrics["loss"])  # stays on the device until the next log
    run.guard.push(run.step, run.metrics["skipped"])  # read on logging and save steps only
    row = {}
    for hook in hooks:
      if hook.due(run):
        hook.after_step(run, row)
    for hook in hooks:
      hook.end_step(run)
    if run.guard.tripped:  # set by the push above or by a save's streak() in the hooks
      _stop_nonfinite(run)
    if run.stop.agreed(run.step):
      log(f"[t5x_like] {run.stop.reason} received: saving step {run.step} and stopping")
      run.save(force=True)
      raise StopRequested(run.stop.reason)
  if run.guard.flush() or run.guard.count:
    _stop_nonfinite(run)  # a run never ends on a streak of skipped steps


def _stop_nonfinite(run: Run) -> None:
  run.save(force=True)
  ckpt = run.ckpt
  if ckpt is not None:
    ckpt.wait()  # retention has run for this save: the steps listed below exist
  good = ckpt.last_healthy_step() if ckpt else None
  run.close()
  where = ("checkpointing is off, nothing was saved" if ckpt is None else
           f"saved step {run.step} in {ckpt.directory}; the newest step saved before the update that "
           f"led into the streak is {good if good is not None else 'none (the streak began before the first save)'}")
  raise run.guard.error(where, good, run.cfg.optimizer.learning_rate)
