"""What pretraining buys, asserted: each built-in task fine-tuned from the pretrained tiny
model beats the same model fine-tuned from a random initialisation with the same data,
steps, seed and tokenizer (scripts/finetune_margins.py, at a smaller budget than the
figures in docs/finetuning.md). Slow: three pretraining runs and ten fine-tuning runs."""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("finetune_margins", os.path.join(ROOT, "scripts", "finetune_margins.py"))
margins = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(margins)

# task -> the smallest margin asserted (in the task's metric, absolute)
MIN_MARGIN = MARGINS_PLACEHOLDER


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("margins"))


@pytest.mark.slow
@pytest.mark.parametrize("task", list(MIN_MARGIN))
def test_pretraining_beats_random_init(workdir, task):
  r = margins.compare(workdir, task, pretrain_steps=PRE_STEPS, finetune_steps=FT_STEPS)
  print(r)
  assert r["margin"] >= MIN_MARGIN[task], r
