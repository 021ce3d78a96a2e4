"""Shared data fixtures: one small synthetic corpus and one tokenizer for the whole session
(training SentencePiece takes about a second; every test reusing it keeps the suite fast)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from t5x_like.config import DataConfig  # noqa: E402
from t5x_like.data import synthetic, tokenizer  # noqa: E402

NUM_TRAIN_DOCS, NUM_EVAL_DOCS, NUM_SHARDS = 1200, 150, 4


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
  """Globs `{"train", "eval"}` of a small synthetic corpus (4 train shards, 1 eval file)."""
  out = tmp_path_factory.mktemp("corpus")
  return synthetic.write_corpus(str(out), num_train_docs=NUM_TRAIN_DOCS,
                                num_eval_docs=NUM_EVAL_DOCS, seed=0,
                                num_train_shards=NUM_SHARDS)


@pytest.fixture(scope="session")
def spm_path(corpus, tmp_path_factory):
  """A unigram SentencePiece model trained on the corpus (as large as the text allows)."""
  path = str(tmp_path_factory.mktemp("tok") / "spm.model")
  return tokenizer.train_sentencepiece(corpus["train"], 512, path, hard_vocab_limit=False)


@pytest.fixture(scope="session")
def tok(spm_path):
  return tokenizer.Tokenizer(spm_path)


@pytest.fixture(scope="session")
def make_cfg():
  """Builds a DataConfig for fast tests: short rows and a small shuffle buffer."""

  def make(**kw) -> DataConfig:
    values = {"source": "text", "seq_len": 32, "shuffle_buffer": 64, "seed": 0}
    values.update(kw)
    return DataConfig(**values)

  return make
