"""The metric sinks: JSONL, TensorBoard and the console progress line. MFU's numerator is
each family's `flops_per_sequence`, its denominator the device peak of train/peak.py."""

from __future__ import annotations

import json
import os
import time

import jax


class MetricsWriter:
  """Appends JSON lines and TensorBoard scalars; only process 0 writes anything."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled and jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      import tensorflow as tf  # TensorFlow is loaded by the data pipeline anyway
      self._tf = tf
      self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, values: dict) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), **{k: int(v) if k in IDENTIFIERS else float(v) for k, v in values.items()},
           "time": time.time()}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    with self._tb.as_default(step=int(step)):
      for k, v in values.items():
        if k not in IDENTIFIERS:
          self._tf.summary.scalar(k, float(v))
    self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()


# Values that identify rather than measure: kept exact in metrics.jsonl, not plotted.
IDENTIFIERS = frozenset({"batch_fingerprint"})


def progress_line(step: int, total: int, m: dict) -> str:
  if "loss" not in m:  # a row of other metrics only (e.g. an eval between logging steps)
    return " | ".join([f"step {step:>6}/{total}"] + [f"{k} {v:.4f}" for k, v in m.items()
                                                      if isinstance(v, float)])
  parts = [f"step {step:>6}/{total}", f"loss {m.get('train_loss_avg', m['loss']):.4f}", f"acc {m['accuracy']:.3f}",
           f"lr {m['learning_rate']:.2e}", f"gnorm {m['grad_norm']:.2f}",
           f"{m['tokens_per_s']:,.0f} tok/s", f"mfu {100 * m['mfu']:.1f}%", f"{m['step_time_s'] * 1e3:.0f} ms/step"]
  if "packing" in m:
    parts.insert(6, f"pack {100 * m['packing']:.0f}%")
  if "eval_loss" in m:
    parts.append(f"eval_loss {m['eval_loss']:.4f}")
  # Fine-tuning: the task's metrics and NSP's, as they are computed.
  parts += [f"{k} {m[k]:.3f}" for k in sorted(m) if (k.startswith("task_") and k != "task_examples"
                                                      and not k.startswith("task_gold")) or "nsp_" in k]
  return " | ".join(parts)
