"""Fixtures of the checkpoint tests: one corpus and tokenizer for every run in
test_checkpoint_*.py, and the session's compilation cache."""

import pytest


@pytest.fixture(scope="module")
def cache_dir(compilation_cache):
  """The session's persistent compilation cache (tests/conftest.py): the runs here compile
  the same few programs again and again, also in subprocesses, which read its path from
  the environment or from this fixture."""
  return compilation_cache


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """Corpus and tokenizer paths, built by the first run and reused by the rest."""
  d = tmp_path_factory.getbasetemp() / "checkpoint_tests_data"
  return {"corpus_dir": str(d / "corpus"), "tokenizer_path": str(d / "spm.model")}
