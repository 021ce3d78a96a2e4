"""The sentence-pair objectives trained end to end on the built-in corpus (slow: minutes).

- MLM + NSP: the tiny encoder classifies held-out pairs (B continues A, or is another
  document's) above chance. Chance is 0.5; over the 256 held-out pairs three standard
  deviations are 0.094.
- Contrastive from given pairs: after training, each held-out sentence's paraphrase is the
  most similar of its batch far more often than chance (1 in 32), and positive pairs are
  more similar than negative ones by a wide cosine margin, wider than before training.
"""

import json

import pytest

from t5x_like import cli


def _summary(workdir):
  return json.load(open(workdir / "summary.json"))


@pytest.mark.slow
def test_mlm_nsp_classifies_held_out_pairs_above_chance(tmp_path):
  wd = tmp_path / "nsp"
  assert cli.main(["train", "--config", "configs/finetune/tiny_nsp.py", "--workdir", str(wd),
                   "--config.train.steps=300", "--config.train.eval_every=0"]) == 0
  s = _summary(wd)
  assert s["eval_nsp_accuracy"] >= 0.62, s


@pytest.mark.slow
def test_paraphrase_embeddings_rank_held_out_positives_first(tmp_path):
  shared = [f"--config.data.synthetic.corpus_dir={tmp_path / 'corpus'}",
            f"--config.data.tokenizer.path={tmp_path / 'tok' / 'spm.model'}", "--config.train.eval_every=0"]
  assert cli.main(["train", "--config", "configs/finetune/tiny_pairs.py", "--workdir", str(tmp_path / "before"),
                   *shared, "--config.train.steps=1"]) == 0
  assert cli.main(["train", "--config", "configs/finetune/tiny_pairs.py", "--workdir", str(tmp_path / "after"),
                   *shared, "--config.train.steps=100"]) == 0
  before, after = _summary(tmp_path / "before"), _summary(tmp_path / "after")
  assert after["task_retrieval_accuracy"] >= 0.9, after
  assert after["task_positive_margin"] >= 0.5, after
  assert after["task_positive_margin"] > before["task_positive_margin"] + 0.1, (before, after)
