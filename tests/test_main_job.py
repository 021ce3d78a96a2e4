"""The README's main job, through the CLI: it must learn, and show it in the summary."""

import json
import os
import subprocess
import sys

import pytest


# About 5 minutes on 2 cores: the README's first command as it is. The fast suite runs the
# same config, shrunk, through tests/train/test_loop.py and test_families_e2e.py.
@pytest.mark.slow
def test_tiny_gpt_learns_the_builtin_corpus(tmp_path):
  wd = tmp_path / "tiny_gpt"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  p = subprocess.run([sys.executable, "-m", "t5x_like.cli", "train", "--config", "configs/tiny/gpt.py",
                      "--workdir", str(wd)], capture_output=True, text=True, env=env, timeout=900)
  assert p.returncode == 0, p.stderr[-3000:]
  assert "arithmetic answer accuracy" in p.stdout
  s = json.load(open(wd / "summary.json"))
  assert s["steps"] == 350
  # Far below a model with no context, and the arithmetic is learned: chance of an exact
  # answer among the ~40 possible results is a few percent.
  assert s["eval_loss"] < 0.4 * s["unigram_loss"], s
  assert s["skill_accuracy"] >= 0.25, s
  assert s["tokens_per_s"] > 0 and 0 < s["mfu"] < 1
