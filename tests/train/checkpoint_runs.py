"""What the checkpoint tests (test_checkpoint_*.py) share: a very small decoder config, the
CLI overrides that reproduce it in a subprocess, and readers of a run's metrics.jsonl."""

import json
import os

from t5x_like import config as C

SMALL = dict(model=dict(d_model=32, num_layers=2, num_heads=4, d_ff=64, vocab_size=512),
             data=dict(seq_len=32, synthetic_train_docs=500, synthetic_eval_docs=50),
             train=dict(batch_size=8, log_every=1, eval_every=0, eval_batches=0, skill_eval_examples=0),
             optimizer=dict(warmup_steps=2, learning_rate=3e-3),
             checkpoint=dict(every_steps=2, max_to_keep=5))
MESH_222 = dict(data=2, fsdp=2, tensor=2, rules="fsdp_tp")


def small_cfg(steps, data, **sections):
  """configs/tiny/gpt.py shrunk to SMALL, with `data` (corpus and tokenizer paths) and any
  further sections, e.g. mesh=MESH_222."""
  cfg = C.replace(C.load_config_file("configs/tiny/gpt.py"), **SMALL)
  cfg = C.replace(cfg, train=dict(steps=steps), data=data)
  for section, values in sections.items():
    cfg = C.replace(cfg, **{section: values})
  return C.validate(cfg)


def small_overrides(data, **sections):
  """The same config as `--config.SECTION.KEY=VALUE` flags for `t5x-like train`."""
  over = [f"--config.{s}.{k}={v}" for s, fields in SMALL.items() for k, v in fields.items()]
  over += [f"--config.data.{k}={v}" for k, v in data.items()]
  return over + [f"--config.{s}.{k}={v}" for s, fields in sections.items() for k, v in fields.items()]


def column(workdir, key="loss"):
  """{step: value} of `key` in the run's metrics.jsonl (a rerun's rows come last and win)."""
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return {r["step"]: r[key] for r in rows if key in r}
