"""The training loop: mesh -> data -> abstract state -> shardings -> init or restore ->
compile -> steps (log, eval, checkpoint) -> summary."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time

import jax
import numpy as np

from t5x_like import checkpoint as checkpoint_lib
from t5x_like import config as config_lib
from t5x_like.checkpoint import Checkpointer
from t5x_like.config import Config, ConfigError
from t5x_like.runtime import data_parallel_size, make_mesh, rules_from_config
from t5x_like.train import metrics as metrics_lib
from t5x_like.train import skill as skill_lib
from t5x_like.train.state import (
  build_setup,
  count_params,
  init_state,
  memory_report,
  sharding_table,
  state_from_params,
)
from t5x_like.train.step import batch_sharding, make_eval_step, make_train_step


def log(msg: str) -> None:
  if jax.process_index() == 0:
    print(msg, flush=True)


# ---------------------------------------------------------------- data preparation


def prepare_data(cfg: Config, workdir: str) -> dict:
  """Resolves train/eval file globs and the tokenizer; builds the synthetic corpus and
  trains a tokenizer on it when the config asks for the built-in data."""
  from t5x_like.data import objectives, synthetic, tokenizer  # noqa: PLC0415 - imports TensorFlow

  d = cfg.data
  files = {"train": d.train_files, "eval": d.eval_files}
  tok_path = d.tokenizer_path
  if d.source == "synthetic":
    corpus_dir = d.corpus_dir or os.path.join(workdir, "corpus")
    if not tok_path:
      tok_path = os.path.join(workdir, "tokenizer", "spm.model")
    if jax.process_index() == 0:
      files = synthetic.write_corpus(corpus_dir, num_train_docs=d.synthetic_train_docs,
                                     num_eval_docs=d.synthetic_eval_docs, seed=d.seed)
      if not os.path.exists(tok_path):
        # Sentinels (T5) and the MLM mask take the last `extra_ids` ids of the model's vocabulary.
        pieces = cfg.model.vocab_size - (d.extra_ids if d.objective in objectives.SENTINEL_OBJECTIVES else 0)
        log(f"training a SentencePiece tokenizer (vocab {pieces}) -> {tok_path}")
        tokenizer.train_sentencepiece(files["train"], pieces, tok_path, seed=d.seed, model_type="bpe",
                                      hard_vocab_limit=False)
    _barrier("prepare_data")
    files = {"train": os.path.join(corpus_dir, "train-*.txt"), "eval": os.path.join(corpus_dir, "eval-*.txt")}
  tok = tokenizer.Tokenizer(tok_path)
  needed = objectives.vocab_needed(tok, d)
  if needed > cfg.model.vocab_size:
    extra = f" + data.extra_ids={d.extra_ids} sentinels" if needed > tok.vocab_size else ""
    raise ConfigError(
        f"tokenizer {tok_path} has {tok.vocab_size} pieces{extra} but model.vocab_size={cfg.model.vocab_size}; "
        f"set --config.model.vocab_size={needed} (or larger)")
  if cfg.model.position == "learned" and d.objective == "span_corruption":
    targets = objectives.span_targets_len(d)
    if targets > cfg.model.max_len:  # an index past the table would read NaN, not fail
      raise ConfigError(f"span corruption makes decoder rows of {targets} tokens (data.targets_len={d.targets_len}, "
                        f"0 = derived from seq_len and noise_density) but model.max_len={cfg.model.max_len} "
                        f"learned positions; set --config.model.max_len={targets} or a smaller data.targets_len")
  return {"train": files["train"], "eval": files["eval"] or files["train"], "tokenizer": tok_path}


def _barrier(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # noqa: PLC0415
    multihost_utils.sync_global_devices(name)


def validate_parallelism(cfg: Config, mesh, rules) -> None:
  """Checks the numbers that must divide evenly before anything is compiled."""
  dp = data_parallel_size(mesh, rules)
  t = cfg.train
  micro = t.batch_size // t.grad_accum_steps
  if micro % dp:
    fits = [b for b in range(dp, 4 * dp * t.grad_accum_steps + 1, dp)][:3]
    raise ConfigError(
        f"train.batch_size={t.batch_size} / grad_accum_steps={t.grad_accum_steps} = {micro} sequences per "
        f"micro-batch, not divisible by the data-parallel size {dp} (mesh data x fsdp); use a batch_size "
        f"that is a multiple of {dp * t.grad_accum_steps} (e.g. {[b * t.grad_accum_steps for b in fits]})")
  if t.batch_size % jax.process_count():
    raise ConfigError(f"train.batch_size={t.batch_size} must be divisible by the {jax.process_count()} processes")
  tp = mesh.shape["tensor"]
  if tp > 1 and cfg.mesh.rules in ("tp", "fsdp_tp"):
    m = cfg.model
    for key, value in (("model.num_heads", m.num_heads), ("model.d_ff", m.d_ff)):
      if value % tp:
        raise ConfigError(f"{key}={value} is not divisible by mesh.tensor={tp}; pick a tensor size that "
                          f"divides it (divisors: {[k for k in range(1, value + 1) if value % k == 0 and k <= 64]})")


# ---------------------------------------------------------------- batches


def to_global(batch_np: dict, sharding) -> dict:
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch_np.items()}


def next_batch(it) -> dict:
  return {k: v.numpy() for k, v in next(it).items()}


def roll_encoder_rows(batch: dict) -> dict:
  """Each row's encoder side replaced by the next row's: the decoder then predicts its
  targets from another example's input."""
  return {k: np.roll(v, 1, axis=0) if k.startswith("encoder_") else v for k, v in batch.items()}


def batch_fingerprint(batch: dict) -> int:
  """A 48-bit digest of this host's batch (every feature, in key order): equal digests at
  equal steps show that two runs, e.g. a straight one and a resumed one, read the same data.
  Exact as a float in metrics.jsonl."""
  h = hashlib.blake2b(digest_size=6)
  for k in sorted(batch):
    h.update(k.encode())
    h.update(np.ascontiguousarray(batch[k]).tobytes())
  return int.from_bytes(h.digest(), "big")


def evaluate(eval_step, params, make_eval_ds, sharding, max_batches: int, transform=None) -> dict:
  if max_batches <= 0:
    return {}  # train.eval_batches=0: no eval, and no eval pipeline to build
  sums = None
  ds = make_eval_ds()
  it = iter(ds)
  for _ in range(max_batches):
    try:
      batch = next_batch(it)
    except StopIteration:
      # Every host must run the same number of (collective) eval steps: a host whose
      # share ran out feeds an all-padding batch (loss weight 0) instead of stopping.
      batch = {k: np.zeros(v.shape, v.dtype.as_numpy_dtype) for k, v in ds.element_spec.items()}
    if transform is not None:
      batch = transform(batch)
    aux = jax.device_get(eval_step(params, to_global(batch, sharding)))
    sums = aux if sums is None else {k: sums[k] + aux[k] for k in sums}
  if not sums or sums["weight_sum"] == 0:
    return {}
  return {"eval_loss": float(sums["nll_sum"] / sums["weight_sum"]),
          "eval_accuracy": float(sums["correct_sum"] / sums["weight_sum"]),
          "eval_tokens": float(sums["weight_sum"])}


# ---------------------------------------------------------------- preemption


class _StopFlag:
  def __init__(self):
    self.reason = None  # what asked the run to stop, for the log line
    self._old = {}

  def install(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._old[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    self.reason = f"signal {signum}"

  def uninstall(self):
    for sig, old in self._old.items():
      signal.signal(sig, old)

  def agreed(self, step: int) -> bool:
    """True on every process once any process was signalled, or (multi-process) once the
    JAX preemption service reached its sync point for a preemption notice, which is how
    TPU maintenance events arrive. Every process calls this at every step."""
    local = self.reason is not None
    if jax.process_count() == 1:
      return local
    from jax.experimental import multihost_utils  # noqa: PLC0415
    from orbax.checkpoint import multihost as ocp_multihost  # noqa: PLC0415
    try:
      notice = ocp_multihost.reached_preemption(step)  # False where the service is off
    except Exception:  # noqa: BLE001 - an unavailable service is not a preemption
      notice = False
    if notice and self.reason is None:
      self.reason = "a TPU preemption notice"
    stop = notice or bool(np.max(multihost_utils.process_allgather(np.array([int(local)]))))
    if stop and self.reason is None:
      self.reason = "a stop signal on another process"
    return stop


# ---------------------------------------------------------------- non-finite steps


class NonFiniteError(RuntimeError):
  """Too many consecutive steps with a non-finite loss or gradient; the CLI prints it plainly."""


class _NonFiniteGuard:
  """Counts consecutive skipped (non-finite) steps. Each step's `skipped` scalar is read one
  step late, after the next step was dispatched, so the host never waits for the step it just
  launched: the device keeps one step queued and the check costs no pipeline stall."""

  def __init__(self, limit: int):
    self.limit, self.count, self.last, self._pending = limit, 0, 0, None

  def push(self, step: int, skipped) -> bool:
    """Records `step`'s on-device flag; True once `limit` steps in a row were skipped."""
    if self.limit <= 0:
      return False
    done, self._pending = self._pending, (step, skipped)
    return done is not None and self._count(*done)

  def flush(self) -> bool:
    done, self._pending = self._pending, None
    return done is not None and self._count(*done)

  def _count(self, step: int, skipped) -> bool:
    if float(jax.device_get(skipped)) > 0:
      self.count, self.last = self.count + 1, step
    else:
      self.count = 0
    return self.count >= self.limit


# ---------------------------------------------------------------- run


def run(cfg: Config, workdir: str, *, dry_run: bool = False) -> dict:
  t_start = time.time()
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    config_lib.save_json(cfg, os.path.join(workdir, "config.json"))

  # Mesh and rules.
  mesh = make_mesh(cfg.mesh)
  rules = rules_from_config(cfg.mesh)
  validate_parallelism(cfg, mesh, rules)
  log(f"[t5x_like] {jax.process_count()} process(es), {jax.device_count()} {jax.devices()[0].platform} "
      f"device(s), mesh {dict(mesh.shape)}, rules {cfg.mesh.rules}")

  # Abstract state and shardings.
  setup = build_setup(cfg, mesh, rules)
  n_params = count_params(setup.abstract_params)
  log(f"[t5x_like] model {cfg.model.family}: {n_params:,} parameters")
  log(sharding_table(setup))
  log(memory_report(setup))
  if dry_run:
    return {"params": n_params}

  # Data.
  from t5x_like.data import pipeline  # noqa: PLC0415
  files = prepare_data(cfg, workdir)
  per_host_batch = cfg.train.batch_size // jax.process_count()
  train_ds = pipeline.make_dataset(cfg.data, files=files["train"], tokenizer_path=files["tokenizer"],
                                   batch_size=per_host_batch, process_index=jax.process_index(),
                                   process_count=jax.process_count(), shuffle=True, repeat=True)
  train_it = iter(train_ds)

  def make_eval_ds():
    return pipeline.make_dataset(cfg.data, files=files["eval"], tokenizer_path=files["tokenizer"],
                                 batch_size=per_host_batch, process_index=jax.process_index(),
                                 process_count=jax.process_count(), shuffle=False, repeat=False)

  # Init or restore. This run's own checkpoints come first (the latest, or
  # checkpoint.restore_from=STEP), so rerunning a command resumes it; a path in
  # checkpoint.restore_from (full state) or checkpoint.init_from (params only, new optimizer
  # state, step 0) seeds a run that has none yet. Everything lands in this run's shardings.
  c, model_dict = cfg.checkpoint, config_lib.to_dict(cfg)["model"]
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), c, model_dict) if c.enabled else None
  start_step, tokens_seen, state = 0, 0.0, None
  restored = ckpt.restore_for_run(c, setup.abstract_state, train_it, log) if ckpt else None
  seed_path = c.restore_from if c.restore_from and not c.restore_from.isdigit() else c.init_from
  if restored is None and c.restore_from and not c.restore_from.isdigit():
    restored = checkpoint_lib.restore_path(c.restore_from, setup.abstract_state, train_it, model_dict)
  elif restored is not None and seed_path:
    log(f"[t5x_like] {seed_path} not used: this run resumes from its own checkpoint")
  if restored is not None:
    state = restored.state
    start_step = int(jax.device_get(state["step"]))
    tokens_seen = float(restored.meta.get("tokens_seen", 0.0))
    log(f"[t5x_like] resumed from step {start_step} ({restored.source})"
        + ("" if restored.data_restored else "; data iterator state not found for this process count, "
           "data restarts"))
  elif c.init_from:
    params = checkpoint_lib.load_params(c.init_from, setup.abstract_state["params"], model_dict)
    state = state_from_params(setup, params)
    log(f"[t5x_like] warm start: params from {c.init_from}, new optimizer state, step 0")
  else:
    state = init_state(setup, cfg, cfg.train.seed)

  # Compile.
  train_step = make_train_step(setup, cfg)
  eval_step = make_eval_step(setup)
  b_sharding = batch_sharding(setup)
  rng = jax.random.key(cfg.train.seed + 1)
  t0 = time.time()
  end_step = min(cfg.train.stop_at_step or cfg.train.steps, cfg.train.steps)
  first = next_batch(train_it) if start_step < end_step else None
  compiled = train_step.lower(state, to_global(first, b_sharding), rng).compile() if first else None
  compile_s = time.time() - t0
  if compiled is not None:
    log(f"[t5x_like] compiled train step in {compile_s:.1f}s")

  seq_len = cfg.data.seq_len
  targets_len = first["decoder_target_tokens"].shape[1] if first and "decoder_target_tokens" in first else 0
  flops_seq = metrics_lib.flops_per_sequence(cfg.model, seq_len, targets_len)
  peak = metrics_lib.peak_flops_per_device(cfg.train.peak_tflops_per_device) * jax.device_count()
  writer = metrics_lib.MetricsWriter(workdir)
  stop = _StopFlag()
  stop.install()

  def meta_for(step):
    return {"step": step, "tokens_seen": tokens_seen, "config": config_lib.to_dict(cfg),
            "mesh": dict(mesh.shape), "process_count": jax.process_count(),
            "versions": {"jax": jax.__version__}}

  def save(step, force=False):
    if ckpt is not None:
      ckpt.save(step, state, train_it, meta_for(step), force=force)

  last_metrics, last_eval, preempted = {}, {}, False
  step = start_step
  window_t, window_steps = time.time(), 0
  train_tokens_per_s = []
  batch = first
  # Packing efficiency: the share of this host's input slots that hold real tokens
  # (segment id > 0) on the side the model reads first.
  seg_key = "decoder_segment_ids" if cfg.model.family == "decoder" else "encoder_segment_ids"
  real_slots, all_slots, run_real, run_all = 0, 0, 0, 0
  guard = _NonFiniteGuard(cfg.train.max_consecutive_nonfinite)

  def stop_nonfinite():
    save(step, force=True)
    if ckpt is not None:
      ckpt.close()
    writer.close()
    where = f"saved step {step} in {ckpt.directory}" if ckpt else "checkpointing is off, nothing was saved"
    raise NonFiniteError(
        f"training diverged: {guard.count} consecutive steps ({guard.last - guard.count + 1}-{guard.last}) had a "
        f"non-finite loss or gradient and were skipped (train.max_consecutive_nonfinite={guard.limit}); {where}, "
        "with the params of the last finite step. Lower --config.optimizer.learning_rate (now "
        f"{cfg.optimizer.learning_rate:g}) and rerun to continue from it, or go back further with "
        "--config.checkpoint.restore_from=STEP")

  try:
    while step < end_step:
      if batch is None:
        batch = next_batch(train_it)
      if seg_key in batch:
        real_slots += int(np.count_nonzero(batch[seg_key]))
        all_slots += batch[seg_key].size
      logged = (step + 1) % cfg.train.log_every == 0 or step + 1 == end_step
      fingerprint = batch_fingerprint(batch) if logged else None  # only logged steps pay for it
      state, m = compiled(state, to_global(batch, b_sharding), rng)
      batch = None
      step += 1
      window_steps += 1
      diverged = guard.push(step, m["skipped"])
      if step % cfg.train.log_every == 0 or step == end_step:
        m = jax.device_get(m)
        dt = time.time() - window_t
        tok_s = cfg.train.batch_size * seq_len * window_steps / dt
        tokens_seen += cfg.train.batch_size * seq_len * window_steps
        row = {k: float(v) for k, v in m.items() if k != "tokens"}
        row["batch_fingerprint"] = fingerprint
        row.update(tokens_per_s=tok_s, step_time_s=dt / window_steps,
                   mfu=flops_seq * (tok_s / seq_len) / peak, tokens_seen=tokens_seen)
        if all_slots:
          row["packing"] = real_slots / all_slots
          run_real, run_all = run_real + real_slots, run_all + all_slots
          real_slots, all_slots = 0, 0
        if step > start_step + window_steps or start_step > 0:
          train_tokens_per_s.append(tok_s)  # the first window includes warm-up
        if cfg.train.eval_every and step % cfg.train.eval_every == 0:
          last_eval = evaluate(eval_step, state["params"], make_eval_ds, b_sharding, cfg.train.eval_batches)
          row.update(last_eval)
        writer.write(step, row)
        log(metrics_lib.progress_line(step, cfg.train.steps, row))
        last_metrics = row
        window_t, window_steps = time.time(), 0
      if ckpt is not None and step % cfg.checkpoint.every_steps == 0 and step < end_step:
        save(step)
      if diverged:
        stop_nonfinite()
      if stop.agreed(step):
        preempted = True
        log(f"[t5x_like] {stop.reason} received: saving step {step} and stopping")
        save(step, force=True)
        break
  finally:
    stop.uninstall()
  if not preempted and guard.flush():
    stop_nonfinite()

  if preempted:
    if ckpt is not None:
      ckpt.close()
    writer.close()
    log(f"[t5x_like] checkpoint for step {step} is complete; rerun the same command to resume")
    return {"preempted": True, "step": step}

  # Final eval, skill score and checkpoint.
  final_eval = evaluate(eval_step, state["params"], make_eval_ds, b_sharding, cfg.train.eval_batches)
  if cfg.model.family == "encoder_decoder" and final_eval:
    # Whether the decoder reads its input at all: a decoder that learned only the targets'
    # own statistics scores the same with another row's encoder input.
    rolled = evaluate(eval_step, state["params"], make_eval_ds, b_sharding, cfg.train.eval_batches,
                      transform=roll_encoder_rows)
    if rolled:
      final_eval["eval_loss_other_inputs"] = rolled["eval_loss"]
  skill = skill_lib.skill_score(cfg, setup, state["params"], files["tokenizer"])
  if ckpt is not None:
    if step not in ckpt.all_steps():
      save(step, force=True)
    ckpt.close()
  final = {**final_eval, **skill}
  numeric = {k: v for k, v in final.items() if isinstance(v, (int, float))}
  if numeric:
    writer.write(step, numeric)
  writer.close()

  summary = {
      "steps": step,
      "final_train_loss": last_metrics.get("loss"),
      **final,
      "tokens_per_s": float(np.median(train_tokens_per_s)) if train_tokens_per_s else last_metrics.get("tokens_per_s"),
      "mfu": last_metrics.get("mfu"),
      "packing": run_real / run_all if run_all else None,
      "compile_s": compile_s,
      "wall_s": time.time() - t_start,
      "params": n_params,
      "workdir": workdir,
      "checkpoints": ckpt.directory if ckpt else None,
      "metrics": os.path.join(workdir, "metrics.jsonl"),
      "tensorboard": os.path.join(workdir, "tensorboard"),
  }
  if jax.process_index() == 0:
    from t5x_like.data import tokenizer  # noqa: PLC0415
    try:
      summary["unigram_loss"] = tokenizer.unigram_loss(tokenizer.Tokenizer(files["tokenizer"]),
                                                       files["train"], files["eval"])
    except Exception as e:  # the baseline is informative only
      summary["unigram_loss"] = None
      log(f"[t5x_like] unigram baseline unavailable: {e}")
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
    log(format_summary(summary))
  return summary


def format_summary(s: dict) -> str:
  def f(v, fmt):
    return "n/a" if v is None else format(v, fmt)
  lines = [
      "",
      "=" * 72,
      f"finished {s['steps']} steps in {s['wall_s']:.1f}s (compile {s['compile_s']:.1f}s), {s['params']:,} params",
      f"train loss {f(s.get('final_train_loss'), '.4f')} | eval loss {f(s.get('eval_loss'), '.4f')} "
      f"| unigram baseline {f(s.get('unigram_loss'), '.4f')}",
  ]
  if s.get("eval_loss_other_inputs") is not None:
    lines.append(f"eval loss with each row's encoder input swapped for another row's "
                 f"{s['eval_loss_other_inputs']:.4f} (equal to the eval loss if the decoder ignored the encoder)")
  if "skill_accuracy" in s:
    lines.append(f"{s.get('skill_name', 'skill')}: {100 * s['skill_accuracy']:.1f}% "
                 f"of {int(s['skill_examples'])}")
  if "arithmetic_fill_accuracy" in s:
    lines.append(f"arithmetic answer as a noise span (greedy): "
                 f"{100 * s['arithmetic_fill_accuracy']:.1f}% of {int(s['skill_examples'])}")
  lines += [
      f"throughput {f(s.get('tokens_per_s'), ',.0f')} tokens/s | MFU {f((s.get('mfu') or 0) * 100, '.2f')}% "
      f"| packing {f(None if s.get('packing') is None else 100 * s['packing'], '.1f')}% of input slots hold tokens",
      f"checkpoints: {s['checkpoints']}",
      f"metrics: {s['metrics']}  tensorboard: {s['tensorboard']}",
      "=" * 72,
  ]
  return "\n".join(lines)


def main_error(e: Exception) -> int:
  print(f"error: {e}", file=sys.stderr)
  return 2
