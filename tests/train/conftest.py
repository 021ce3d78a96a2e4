"""Fixtures of the checkpoint tests: one corpus and tokenizer, and one persistent
compilation cache, for every run in test_checkpoint_*.py."""

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  """The runs compile the same few programs again and again (same devices and config), also
  in subprocesses: a persistent compilation cache for the session turns repeats into lookups."""
  d = str(tmp_path_factory.getbasetemp() / "checkpoint_tests_jax_cache")
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  old = {n: getattr(jax.config, n) for n in names}
  for n, v in zip(names, (d, 0.0, 0), strict=True):
    jax.config.update(n, v)
  compilation_cache.reset_cache()
  yield d
  for n, v in old.items():
    jax.config.update(n, v)
  compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """Corpus and tokenizer paths, built by the first run and reused by the rest."""
  d = tmp_path_factory.getbasetemp() / "checkpoint_tests_data"
  return {"corpus_dir": str(d / "corpus"), "tokenizer_path": str(d / "spm.model")}
