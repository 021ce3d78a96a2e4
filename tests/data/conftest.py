"""Data test fixtures. The session's corpus and tokenizer (`corpus`, `spm_path`, `tok`) live
in tests/conftest.py, shared with the other test folders."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from t5x_like import config as C  # noqa: E402


@pytest.fixture(scope="session")
def make_cfg():
  """Builds a DataConfig for fast tests: short rows and a small shuffle buffer."""

  def make(**kw) -> C.DataConfig:
    values = {"source": "text", "seq_len": 32, "shuffle_buffer": 64, "seed": 0}
    values.update(kw)  # flat (old) and dotted keys are both accepted
    return C.replace(C.Config(), data=values).data

  return make
