"""Periodic work attached to the training loop, each piece a hook with an interval (as
Levanter's `trainer.add_hook(..., every=N)` and T5X's actions): throughput metrics, eval,
the skill score, checkpoints and profiling. A hook adds values to the step's metrics row;
the loop writes the row. New work (fine-tuning metrics, say) is a new hook, not a branch.

Each hook sees the loop's `Run` and may implement:
  before_step(run, batch)   the host batch of step run.step + 1, before it runs
  after_step(run, row)      after step run.step, when due (every `every` steps)
  end_step(run)             after the step's row is written
  finish(run, final)        once after the last step: final values go into `final`
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import numpy as np

from t5x_like.checkpoint import Checkpointer, meta_for
from t5x_like.config import TASK_OBJECTIVES, Config, to_dict
from t5x_like.train import evaluate
from t5x_like.train.feed import Feed, batch_fingerprint
from t5x_like.train.guards import NonFiniteGuard, StopFlag, StopRequested
from t5x_like.train.metrics import MetricsWriter, progress_line
from t5x_like.train.peak import device_peak


@dataclasses.dataclass
class Run:
  """What the loop and its hooks share."""

  cfg: Config
  workdir: str
  setup: object  # TrainSetup
  feed: Feed
  ckpt: Checkpointer | None
  writer: MetricsWriter
  log: object
  state: dict
  step: int
  end_step: int
  tokens_seen: float
  stop: StopFlag
  guard: NonFiniteGuard
  start_step: int = 0
  metrics: dict | None = None  # the last step's metrics, still on the device
  # The train losses since the last logging step (device values until the next log), saved
  # with each checkpoint so a resumed run logs the same window means as an uninterrupted one.
  window_losses: list = dataclasses.field(default_factory=list)
  session: object = None  # the workdir's Session (workdir.py): its lock is checked before each save

  def save(self, force: bool = False, final: bool = False) -> None:
    """Saves the current step with the data iterator and the run's metadata (with the
    non-finite streak it was saved in); `final`: unless this step is saved already."""
    if self.ckpt is None or (final and self.step in self.ckpt.all_steps()):
      return
    if self.session is not None:
      self.session.check_owner(f"saving step {self.step}")
    meta = meta_for(to_dict(self.cfg), step=self.step, tokens_seen=self.tokens_seen,
                    mesh_shape=dict(self.setup.mesh.shape), nonfinite=self.guard.streak(),
                    train_window=[float(x) for x in jax.device_get(self.window_losses)])
    meta["train_input"] = self.feed.train_input
    self.ckpt.save(self.step, self.state, self.feed.train_iterator, meta, force=force)

  def close(self) -> None:
    """Waits for the last save and closes the metric sinks (once)."""
    ckpt, self.ckpt = self.ckpt, None
    try:
      if ckpt is not None:
        ckpt.close()
    finally:
      self.writer.close()


class Hook:
  def __init__(self, every: int = 0):
    self.every = every

  def due(self, run: Run) -> bool:
    return self.every > 0 and run.step % self.every == 0

  def before_step(self, run: Run, batch: dict) -> None:
    pass

  def after_step(self, run: Run, row: dict) -> None:
    pass

  def end_step(self, run: Run) -> None:
    pass

  def finish(self, run: Run, final: dict) -> None:
    pass


class ThroughputHook(Hook):
  """Train metrics on logging steps (and the last): loss and the step's other metrics,
  tokens/s, MFU, tokens seen, packing, and a fingerprint of the step's batch."""

  def __init__(self, every: int, cfg: Config):
    super().__init__(every)
    self.cfg = cfg
    self.peak_device = device_peak(cfg.model.dtype, cfg.train.peak_tflops_per_device)
    self.peak = self.peak_device.flops_per_device * jax.device_count()
    self.flops_seq = None  # set from the first batch's lengths
    self.window_start, self.window_steps = time.time(), 0
    self.fingerprint = None
    self.slots = np.zeros(2, np.int64)  # real and all input slots since the last log
    self.run_slots = np.zeros(2, np.int64)
    self.tokens_per_s, self.last = [], {}

  def due(self, run: Run) -> bool:
    return super().due(run) or run.step == run.end_step

  def before_step(self, run: Run, batch: dict) -> None:
    contract = run.setup.model_class.contract
    if self.flops_seq is None:
      weights = batch[contract.target_side.loss_weights]  # the share scored: the MLM head's positions
      self.flops_seq = run.setup.model_class.flops_per_sequence(self.cfg.model, *contract.lengths(batch),
                                                                scored=float(np.mean(weights > 0)))
    # Packing efficiency: the share of this host's input slots that hold real tokens
    # (segment id > 0) on the side the model reads first.
    segments = batch[contract.first_side.segment_ids]
    self.slots += (int(np.count_nonzero(segments)), segments.size)
    step = run.step + 1
    logged = (self.every > 0 and step % self.every == 0) or step == run.end_step
    self.fingerprint = batch_fingerprint(batch) if logged else None  # only logged steps pay for it
    self.window_steps += 1

  def end_step(self, run: Run) -> None:
    if self.window_steps < 0:
      self.window_start, self.window_steps = time.time(), 0

  def after_step(self, run: Run, row: dict) -> None:
    m, losses = jax.device_get((run.metrics, run.window_losses))
    if super().due(run):
      run.window_losses = []  # a last step off the logging grid (stop_at_step) keeps its window
    dt = time.time() - self.window_start
    tok_s = self.cfg.train.batch_size * self.cfg.data.seq_len * self.window_steps / dt
    row.update({k: float(v) for k, v in m.items() if k != "tokens"})
    # The mean over the window since the last log, this step included (with the steps
    # before a resume, from the checkpoint): one step's loss is noisy.
    row["train_loss_avg"] = float(np.mean(losses))
    row.update(batch_fingerprint=self.fingerprint, tokens_per_s=tok_s, step_time_s=dt / self.window_steps,
               mfu=self.flops_seq * (tok_s / self.cfg.data.seq_len) / self.peak, tokens_seen=run.tokens_seen)
    if self.slots[1]:
      row["packing"] = self.slots[0] / self.slots[1]
      self.run_slots += self.slots
      self.slots[:] = 0
    if run.step > run.start_step + self.window_steps or run.start_step > 0:
      self.tokens_per_s.append(tok_s)  # the first window includes warm-up
    self.last = row
    self.window_steps = -1  # reset once the row is written (end_step)

  def summary(self, run: Run) -> dict:
    if not self.last and run.step > 0:
      self._logged_before(run)  # resumed at its last step (a stop in the final eval): nothing ran
    return {"final_train_loss": self.last.get("train_loss_avg"),
            "peak_tflops_per_device": self.peak_device.flops_per_device / 1e12, "peak_source": self.peak_device.source,
            "tokens_per_s": float(np.median(self.tokens_per_s)) if self.tokens_per_s else self.last.get("tokens_per_s"),
            "mfu": self.last.get("mfu"),
            "packing": self.run_slots[0] / self.run_slots[1] if self.run_slots[1] else None}

  def _logged_before(self, run: Run) -> None:
    """The last train row up to this step, and the throughput of the windows before it
    (not the first, which holds the compile), from metrics.jsonl (process 0's)."""
    rows = {}
    try:
      with open(os.path.join(run.workdir, "metrics.jsonl")) as f:
        for line in f:
          try:
            r = json.loads(line)
          except ValueError:
            continue  # a line cut by a kill
          if "train_loss_avg" in r and r.get("step", run.step + 1) <= run.step:
            rows[r["step"]] = r  # a rerun's rows come later and win
    except OSError:
      return
    if rows:
      self.last = rows[max(rows)]
      self.tokens_per_s = [rows[s]["tokens_per_s"] for s in sorted(rows)[1:] if "tokens_per_s" in rows[s]]


def _stop_check(run: Run):
  """For the final phase: raises StopRequested once a stop is agreed on (between batches)."""
  def check():
    if run.stop.agreed(run.step, force=True):
      run.log(f"[t5x_like] {run.stop.reason} received during the final evaluation; stopping")
      raise StopRequested(run.stop.reason)
  return check


class EvalHook(Hook):
  """Held-out loss and accuracy every `every` steps, and the final eval with the family's
  diagnostic variants."""

  def after_step(self, run: Run, row: dict) -> None:
    row.update(evaluate.evaluate(run.setup, run.state["params"], run.feed, run.cfg.train.eval_batches))

  def finish(self, run: Run, final: dict) -> None:
    final.update(evaluate.final_evaluation(run.setup, run.state["params"], run.feed, run.cfg.train.eval_batches,
                                           check=_stop_check(run), unigram=self._unigram(run)))

  def _unigram(self, run: Run):
    """The train documents' unigram log-probabilities, the baseline of the final eval (None
    when the training input is not files, e.g. TFDS or mixtures)."""
    from t5x_like.data import tokenizer, unigram

    if not run.feed.files.train or run.cfg.data.objective in TASK_OBJECTIVES or run.cfg.model.head != "lm":
      return None  # labelled examples: no document text to count
    try:
      return unigram.unigram_log_probs(tokenizer.Tokenizer(run.feed.files.tokenizer), run.feed.files.train,
                                       run.cfg.model.vocab_size)
    except Exception as e:  # the baseline is informative only
      run.log(f"[t5x_like] unigram baseline unavailable: {e}")
      return None


class SkillHook(Hook):
  """The family's skill score on the built-in corpus, at the end (and every `every` steps)."""

  def __init__(self, every: int, tokenizer_path: str):
    super().__init__(every)
    self.tokenizer_path = tokenizer_path

  def after_step(self, run: Run, row: dict) -> None:
    row.update({k: v for k, v in self._score(run).items() if isinstance(v, (int, float))})

  def finish(self, run: Run, final: dict) -> None:
    _stop_check(run)()
    final.update(self._score(run))

  def _score(self, run: Run) -> dict:
    return evaluate.skill_score(run.cfg, run.setup, run.state["params"], self.tokenizer_path)


class WriteHook(Hook):
  """Writes the step's row, when hooks filled one, to metrics.jsonl and TensorBoard and
  prints the progress line; at the end, the final values."""

  def due(self, run: Run) -> bool:
    return True

  def after_step(self, run: Run, row: dict) -> None:
    lock = getattr(run.session, "lock", None)  # process 0's
    if row and lock is not None and lock.taken_by() is not None:
      return  # another trainer writes this workdir now; the next save stops this one
    if row:
      run.writer.write(run.step, row)
      run.log(progress_line(run.step, run.cfg.train.steps, row))

  def finish(self, run: Run, final: dict) -> None:
    numeric = {k: v for k, v in final.items() if isinstance(v, (int, float))}
    if numeric:
      run.writer.write(run.step, numeric)


class CheckpointHook(Hook):
  """A checkpoint every `every` steps (the loop saves the last step), and a failed
  background save reported at the step it failed."""

  def due(self, run: Run) -> bool:
    return run.ckpt is not None and super().due(run) and run.step < run.end_step

  def after_step(self, run: Run, row: dict) -> None:
    run.save()

  def end_step(self, run: Run) -> None:
    if run.ckpt is not None:
      run.ckpt.poll()


class ProfileHook(Hook):
  """A `jax.profiler` trace of steps [first, first + steps) into WORKDIR/profile, for
  TensorBoard's profile tab or Perfetto."""

  def __init__(self, first: int, steps: int):
    super().__init__(0)
    self.first, self.last, self.active = first, first + steps - 1, False

  def before_step(self, run: Run, batch: dict) -> None:
    if self.first and run.step + 1 == self.first:
      jax.profiler.start_trace(os.path.join(run.workdir, "profile"))
      self.active = True

  def end_step(self, run: Run) -> None:
    if self.active and (run.step >= self.last or run.step == run.end_step):
      jax.block_until_ready(run.state)
      jax.profiler.stop_trace()
      self.active = False
      run.log(f"[t5x_like] profile of steps {self.first}-{run.step} in {os.path.join(run.workdir, 'profile')}")


def default_hooks(cfg: Config, tokenizer_path: str) -> list[Hook]:
  """The hooks of a training run, in the order they run at a step."""
  from t5x_like.train.task_eval import TaskEvalHook

  t = cfg.train
  return [ThroughputHook(t.log_every, cfg), EvalHook(t.eval_every), SkillHook(0, tokenizer_path),
          TaskEvalHook(t.eval_every, tokenizer_path), WriteHook(), CheckpointHook(cfg.checkpoint.every_steps),
          ProfileHook(t.profile_from_step, t.profile_steps)]
