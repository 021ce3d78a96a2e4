"""Fine-tuning through the CLI, in-process at tiny shapes: a pretrained encoder warm-starts
a classifier (the head new, the body from the checkpoint), the held-out task metrics agree
with the eval pass, and a body that does not fit is one plain error."""

import json

import jax
import numpy as np
import pytest

from t5x_like import cli
from t5x_like import config as C
from t5x_like.checkpoint.params import load_params, read_params
from t5x_like.errors import ConfigError
from t5x_like.train.state import abstract_model

SMALL = ["--config.model.d_model=32", "--config.model.num_layers=1", "--config.model.num_heads=2",
         "--config.model.d_ff=64", "--config.data.synthetic.train_docs=300", "--config.data.synthetic.eval_docs=40",
         "--config.train.batch_size=8", "--config.train.eval_batches=2", "--config.train.log_every=1",
         "--config.train.skill_eval_examples=0", "--config.optimizer.warmup_steps=1"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  wd = tmp_path_factory.mktemp("pre")
  assert cli.main(["train", "--config", "configs/tiny/bert.py", "--workdir", str(wd), *SMALL,
                   "--config.data.seq_len=16", "--config.train.steps=2", "--config.train.eval_every=0"]) == 0
  return wd


def test_classifier_warm_starts_from_the_pretrained_body(pretrained, tmp_path, capsys):
  wd = tmp_path / "cls"
  assert cli.main(["train", "--config", "configs/finetune/tiny_classify.py", "--workdir", str(wd), *SMALL,
                   "--config.data.seq_len=16", "--config.train.steps=3", "--config.train.eval_every=3",
                   "--config.data.synthetic.task_train_examples=64", "--config.data.synthetic.task_eval_examples=16",
                   f"--config.checkpoint.init_from={pretrained / 'checkpoints'}"]) == 0
  out = capsys.readouterr().out
  assert f"tokenizer of the warm start: {pretrained / 'tokenizer' / 'spm.model'}" in out
  assert "new: task_head/bias, task_head/kernel, task_head/pooler, task_head/pooler_bias" in out
  assert "held-out task metrics: accuracy" in out
  s = json.load(open(wd / "summary.json"))
  # The metric pass (predict -> confusion matrix) and the loss pass count the same examples alike.
  assert s["task_examples"] == s["eval_tokens"] == 16
  assert s["task_accuracy"] == pytest.approx(s["eval_accuracy"])
  assert 0 < s["task_macro_f1"] <= 1
  # `t5x-like eval` of the fine-tune reports the same task metrics (it reported loss alone,
  # and a perplexity of the class labels).
  assert cli.main(["eval", "--workdir", str(wd)]) == 0
  assert "| macro_f1 " in capsys.readouterr().out
  row = json.loads((wd / "eval" / "eval" / "metrics.jsonl").read_text().splitlines()[-1])
  assert row["task_accuracy"] == s["task_accuracy"] and row["task_macro_f1"] == s["task_macro_f1"]
  assert row["eval_loss"] == s["eval_loss"] and "eval_perplexity" not in row


def test_load_params_keeps_the_body_and_names_the_new_head(pretrained):
  cfg = C.build_config("configs/finetune/tiny_classify.py", [a for a in SMALL if "model." in a])
  _, abstract, _ = abstract_model(cfg)
  step = sorted(p for p in (pretrained / "checkpoints").iterdir() if p.name.isdigit())[-1]
  params, fresh = load_params(str(step), abstract)
  assert fresh == ["task_head/bias", "task_head/kernel", "task_head/pooler", "task_head/pooler_bias"]
  assert "task_head" not in params and "mlm_dense" not in params  # the MLM head is not read
  saved, _ = read_params(str(step))
  for a, b in zip(jax.tree.leaves(params["stack"]), jax.tree.leaves(saved["stack"]), strict=True):
    np.testing.assert_array_equal(a, b)


def test_a_body_that_does_not_fit_is_a_config_error(pretrained, tmp_path, capsys):
  rc = cli.main(["train", "--config", "configs/finetune/tiny_classify.py", "--workdir", str(tmp_path / "x"),
                 *SMALL, "--config.model.d_model=48", "--config.train.steps=1",
                 f"--config.checkpoint.init_from={pretrained / 'checkpoints'}"])
  err = capsys.readouterr().err
  assert rc != 0 and "does not fit this model" in err and "shape mismatches" in err
  assert "Traceback" not in err


@pytest.mark.parametrize("overrides, needle", [
    (["data.objective=classification"], "trains the 'classify' head but model.head='lm'"),
    (["data.objective=classification", "model.head=classify"], "needs model.num_labels >= 2"),
    (["model.family=decoder", "model.head=tag", "model.num_labels=3"], "is an encoder head"),
    (["data.objective=classification", "model.head=classify", "model.num_labels=2", 'data.task.labels=["neg","neg"]'],
     "data.task.labels names 'neg' more than once"),
    (["data.objective=mlm_nsp"], "model.nsp=true go together"),
    (["data.objective=contrastive", "model.head=embed"], "needs model.dropout_rate > 0"),
])
def test_mismatched_task_settings_name_the_fix(overrides, needle):
  with pytest.raises(ConfigError, match=needle):
    C.build_config("configs/tiny/bert.py", [f"--config.{o}" for o in overrides])


def test_a_warm_start_reads_its_checkpoints_tokenizer_and_refuses_another(pretrained, tmp_path, capsys):
  """The tokenizer a warm start trains with is the checkpoint's: taken when none is named
  (also for file sources, which used to demand one), accepted when a copy of it is named,
  refused when another is (it trained silently, at chance accuracy)."""
  import shutil

  from t5x_like.data.prepare import prepare_data

  theirs = pretrained / "tokenizer" / "spm.model"
  (tmp_path / "t.jsonl").write_text(json.dumps({"text": "a b", "label": "x"}) + "\n")
  base = ["--config.data.source=jsonl", f"--config.data.train_files={tmp_path / 't.jsonl'}",
          f"--config.checkpoint.init_from={pretrained / 'checkpoints'}", *[a for a in SMALL if "model." in a]]
  cfg = C.build_config("configs/finetune/tiny_classify.py", base)
  assert prepare_data(cfg, str(tmp_path / "wd"), print).tokenizer == str(theirs)
  assert "data.eval_files is empty: evaluation reads the training files" in capsys.readouterr().out
  shutil.copy(theirs, tmp_path / "copy.model")
  cfg = C.build_config("configs/finetune/tiny_classify.py", base + [f"--config.data.tokenizer.path={tmp_path / 'copy.model'}"])
  assert prepare_data(cfg, str(tmp_path / "wd"), print).tokenizer == str(tmp_path / "copy.model")
  (tmp_path / "other.model").write_bytes(theirs.read_bytes()[:-1] + b"x")
  cfg = C.build_config("configs/finetune/tiny_classify.py", base + [f"--config.data.tokenizer.path={tmp_path / 'other.model'}"])
  with pytest.raises(ConfigError, match=f"is not the tokenizer checkpoint.init_from was trained with \\({theirs}\\)"):
    prepare_data(cfg, str(tmp_path / "wd"), print)
  # The pretraining run's tokenizer gone: an error, not a new tokenizer under its embeddings.
  shutil.copytree(pretrained / "checkpoints", tmp_path / "moved" / "checkpoints")
  cfg = C.build_config("configs/finetune/tiny_classify.py", [f"--config.checkpoint.init_from={tmp_path / 'moved'}"])
  with pytest.raises(ConfigError, match="the tokenizer it was trained with is not found"):
    prepare_data(cfg, str(tmp_path / "wd2"), print)
  assert not (tmp_path / "wd2" / "tokenizer").exists()
