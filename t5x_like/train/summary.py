"""The end of a run: `summary.json` and the console summary, with the unigram baseline
(what a model that ignores context reaches on the same eval tokens) beside the loss."""

from __future__ import annotations

import os

import jax

from t5x_like.workdir import write_json


def write_summary(summary: dict, log) -> dict:
  """Writes WORKDIR/summary.json and prints the summary (process 0 only)."""
  summary.setdefault("unigram_loss", None)
  if jax.process_index() != 0:
    return summary
  write_json(os.path.join(summary["workdir"], "summary.json"), summary)
  log(format_summary(summary))
  return summary


def format_summary(s: dict) -> str:
  def f(v, fmt):
    return "n/a" if v is None else format(v, fmt)
  first_batch = f"first batch {s['first_batch_s']:.1f}s, " if s.get("first_batch_s") is not None else ""
  lines = [
      "",
      "=" * 72,
      f"finished {s['steps']} steps in {s['wall_s']:.1f}s ({first_batch}compile {s['compile_s']:.1f}s), "
      f"{s['params']:,} params",
      f"train loss {f(s.get('final_train_loss'), '.4f')} | eval loss {f(s.get('eval_loss'), '.4f')} "
      f"| unigram baseline {f(s.get('unigram_loss'), '.4f')}",
  ]
  if s.get("eval_loss_other_inputs") is not None:
    lines.append(f"eval loss with each row's encoder input swapped for another row's "
                 f"{s['eval_loss_other_inputs']:.4f} (equal to the eval loss if the decoder ignored the encoder)")
  if "skill_accuracy" in s:
    lines.append(f"{s.get('skill_name', 'skill')}: {100 * s['skill_accuracy']:.1f}% "
                 f"of {int(s['skill_examples'])}")
  task = [f"{k[5:]} {s[k]:.4f}" for k in sorted(s) if k.startswith("task_") and isinstance(s[k], float)]
  task += [f"{k[5:]} {s[k]:.4f}" for k in sorted(s) if k.startswith("eval_nsp_")]
  if task:
    lines.append("held-out task metrics: " + " | ".join(task))
  if "arithmetic_fill_accuracy" in s:
    lines.append(f"arithmetic answer as a noise span (greedy): "
                 f"{100 * s['arithmetic_fill_accuracy']:.1f}% of {int(s['skill_examples'])}")
  lines += [
      f"throughput {f(s.get('tokens_per_s'), ',.0f')} tokens/s | MFU {f((s.get('mfu') or 0) * 100, '.2f')}% "
      f"| packing {f(None if s.get('packing') is None else 100 * s['packing'], '.1f')}% of input slots hold tokens",
      f"MFU against {f(s.get('peak_tflops_per_device'), '.3g')} TFLOP/s per device ({s.get('peak_source', 'n/a')})",
      f"checkpoints: {s['checkpoints']}",
      f"metrics: {s['metrics']}  tensorboard: {s['tensorboard']}",
      "=" * 72,
  ]
  return "\n".join(lines)
