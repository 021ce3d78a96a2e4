"""Every test process sees 8 simulated CPU devices, so mesh tests run on any machine. One
small synthetic corpus and one tokenizer serve the whole session (training SentencePiece
takes about a second; every test reusing it keeps the suite fast)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_platforms", "cpu")

NUM_TRAIN_DOCS, NUM_EVAL_DOCS, NUM_SHARDS = 1200, 150, 4


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
  """Globs `{"train", "eval"}` of a small synthetic corpus (4 train shards, 1 eval file)."""
  from t5x_like.data import synthetic  # keeps this file free of TF imports
  out = tmp_path_factory.mktemp("corpus")
  return synthetic.write_corpus(str(out), num_train_docs=NUM_TRAIN_DOCS,
                                num_eval_docs=NUM_EVAL_DOCS, seed=0,
                                num_train_shards=NUM_SHARDS)


@pytest.fixture(scope="session")
def spm_path(corpus, tmp_path_factory):
  """A unigram SentencePiece model trained on the corpus (as large as the text allows)."""
  from t5x_like.data import tokenizer
  path = str(tmp_path_factory.mktemp("tok") / "spm.model")
  return tokenizer.train_sentencepiece(corpus["train"], 512, path, hard_vocab_limit=False)


@pytest.fixture(scope="session")
def tok(spm_path):
  from t5x_like.data import tokenizer
  return tokenizer.Tokenizer(spm_path)
