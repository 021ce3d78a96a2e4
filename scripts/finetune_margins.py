"""What pretraining buys on the built-in tasks: each tiny family is pretrained on the
built-in corpus, then every fine-tuning config (configs/finetune/) is run twice with the
same data, steps and seed: from the pretrained checkpoint, and from a random
initialisation (with the same tokenizer). Prints one line per task with the held-out
metric of both and their difference, and writes them as JSON.

  python scripts/finetune_margins.py --workdir /tmp/t5x_like/margins
  python scripts/finetune_margins.py --workdir /tmp/m --pretrain-steps 300 --finetune-steps 150 --tasks classify,tag
  python scripts/finetune_margins.py --workdir /tmp/m --tasks seq2seq --seeds 3

The slow test tests/finetune/test_margins.py runs it at a smaller budget and asserts the
margins; docs/finetuning.md has the figures of a full run.
"""

from __future__ import annotations

import argparse
import json
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# task -> (fine-tuning config, pretraining config, the held-out metric compared)
# Pretraining steps per tiny family: the tiny configs' own, but T5 at half of its 1,500.
PRETRAIN_STEPS = {"bert.py": 400, "gpt.py": 350, "t5.py": 750}
TASKS = {
    "completion": ("tiny_completion.py", "gpt.py", "task_exact_match"),
    "classify": ("tiny_classify.py", "bert.py", "task_accuracy"),
    "pair_classify": ("tiny_pair_classify.py", "bert.py", "task_accuracy"),
    "tag": ("tiny_tag.py", "bert.py", "task_span_f1"),
    "seq2seq": ("tiny_seq2seq.py", "t5.py", "task_exact_match"),
}


def _train(args: list[str]) -> dict:
  from t5x_like import cli

  rc = cli.main(["train", *args])
  if rc != 0:
    raise SystemExit(f"training failed ({rc}): {' '.join(args)}")
  workdir = args[args.index("--workdir") + 1]
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


def pretrain(workdir: str, family_config: str, steps: int, extra: list[str]) -> str:
  """The pretrained checkpoints directory of a tiny family (trained once, then reused)."""
  wd = os.path.join(workdir, "pretrain_" + family_config[:-3])
  if not os.path.exists(os.path.join(wd, "summary.json")):
    _train(["--config", os.path.join(ROOT, "configs", "tiny", family_config), "--workdir", wd,
            f"--config.train.steps={steps}", "--config.train.skill_eval_examples=0",
            "--config.train.eval_every=0", f"--config.checkpoint.every_steps={steps}", *extra])
  return wd


def compare(workdir: str, task: str, *, finetune_steps: int, pretrain_steps: int = 0, pretrain_extra=(),
            finetune_extra=(), seeds: int = 1) -> dict:
  """The task's held-out metric fine-tuned from the pretrained model and from scratch; with
  `seeds` > 1, the mean over that many fine-tuning seeds (train.seed and data.seed 0, 1, ...:
  the dropout, the order and the examples drawn), each seed's figures in `per_seed`."""
  config, family, metric = TASKS[task]
  pretrain_steps = pretrain_steps or PRETRAIN_STEPS[family]
  pre = pretrain(workdir, family, pretrain_steps, list(pretrain_extra))
  steps = [f"--config.train.steps={finetune_steps}", f"--config.train.eval_every={finetune_steps}"] if finetune_steps else [
      "--config.train.eval_every=0"]  # 0: the config's own steps, evaluated at the end
  common = ["--config", os.path.join(ROOT, "configs", "finetune", config), *steps, *finetune_extra]
  out = {"task": task, "metric": metric, "pretrain_steps": pretrain_steps, "finetune_steps": finetune_steps,
         "per_seed": []}
  for seed in range(seeds):
    row = {"seed": seed}
    seeded = [f"--config.train.seed={seed}", f"--config.data.seed={seed}"] if seed else []
    for name, init in (("pretrained", [f"--config.checkpoint.init_from={pre}/checkpoints"]),
                       ("scratch", [f"--config.data.tokenizer.path={pre}/tokenizer/spm.model"])):
      t0 = time.time()
      run_dir = os.path.join(workdir, f"{task}_{name}" + (f"_seed{seed}" if seed else ""))
      summary = _train([*common, *seeded, "--workdir", run_dir, *init])
      row[name], row[f"{name}_s"] = summary.get(metric), time.time() - t0
    out["per_seed"].append(row)
  for key in ("pretrained", "scratch", "pretrained_s", "scratch_s"):
    out[key] = sum(r[key] for r in out["per_seed"]) / seeds
  out["margin"] = out["pretrained"] - out["scratch"]
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--tasks", default=",".join(TASKS))
  p.add_argument("--pretrain-steps", type=int, default=0, help="0: the PRETRAIN_STEPS of each family")
  p.add_argument("--finetune-steps", type=int, default=0, help="0: each fine-tuning config's own")
  p.add_argument("--seeds", type=int, default=1, help="fine-tuning seeds per task; the figures are their mean")
  a = p.parse_args(argv)
  rows = [compare(a.workdir, t, pretrain_steps=a.pretrain_steps, finetune_steps=a.finetune_steps, seeds=a.seeds)
          for t in a.tasks.split(",")]
  print(f"{'task':<15} {'metric':<18} {'pretrained':>10} {'scratch':>8} {'margin':>7}")
  for r in rows:
    print(f"{r['task']:<15} {r['metric']:<18} {r['pretrained']:>10.3f} {r['scratch']:>8.3f} {r['margin']:>+7.3f}")
  with open(os.path.join(a.workdir, "margins.json"), "w") as f:
    json.dump(rows, f, indent=2)
  print(json.dumps(rows))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
