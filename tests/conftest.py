"""Every test process sees 8 simulated CPU devices, so mesh tests run on any machine (and,
in the fast suite, `-m "not slow"`, XLA compiles without LLVM's optimisations). One
small synthetic corpus and one tokenizer serve the whole session (training SentencePiece
takes about a second; every test reusing it keeps the suite fast)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_platforms", "cpu")

# The fast suite's programs are tiny: compiling them costs far more than running them, and
# LLVM's optimisations are most of XLA's CPU compile time (measured: test_encoder_decoder.py
# 184 s -> 78 s with both files' compiles cold; a tiny GPT step runs 1.7x slower). The slow
# tests train for hundreds of steps, so the flags apply only where they are deselected.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def pytest_configure(config):
  """Runs before any test touches a device, so the XLA backend still reads XLA_FLAGS."""
  if "not slow" in (config.getoption("markexpr") or "") and "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " " + FAST_COMPILE_FLAGS

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


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent XLA compilation cache for the whole run, shared by the xdist workers
  and by the CLI subprocesses the tests start (through the environment): many tests
  compile the same tiny programs (the checkpoint checksums, the tiny configs' steps), and a
  repeat becomes a file read. It lives in the run's temporary directory, so every run of
  the suite (and CI's fresh clone) starts cold and measures the same thing."""
  from jax.experimental.compilation_cache import compilation_cache as cc
  root = tmp_path_factory.getbasetemp()
  shared = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root  # popen-gwN/.. is the run's
  path = str(shared / "jax_compilation_cache")
  # Each setting once, by its environment name (read by the subprocesses) and its
  # jax.config name (the lower-case of it, for this process).
  for name, value in (("JAX_COMPILATION_CACHE_DIR", path), ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")):
    os.environ[name] = value
    jax.config.update(name.lower(), float(value) if name.endswith("SECS") else value)
  cc.reset_cache()
  return path
