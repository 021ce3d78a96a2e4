"""`t5x-like convert --from-hf` then `--to-hf` reproduces every tensor of a HF checkpoint."""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from safetensors.numpy import load_file  # noqa: E402

from t5x_like.cli import main  # noqa: E402


def _tensors(d):
  out = {}
  for f in os.listdir(d):
    if f.endswith(".safetensors"):
      out.update(load_file(os.path.join(d, f)))
  return out


def test_convert_round_trip_through_orbax(tmp_path):
  cfg = transformers.GPT2Config(vocab_size=101, n_positions=24, n_embd=32, n_layer=2, n_head=4)
  model = transformers.GPT2LMHeadModel(cfg)
  src = str(tmp_path / "hf")
  model.save_pretrained(src, safe_serialization=True)
  assert main(["convert", "--from-hf", src, "--output", str(tmp_path / "ckpt")]) == 0
  assert os.path.isdir(tmp_path / "ckpt" / "0" / "state")
  assert main(["convert", "--to-hf", str(tmp_path / "ckpt" / "0"), "--output", str(tmp_path / "back")]) == 0
  a, b = _tensors(src), _tensors(str(tmp_path / "back"))
  for name, t in b.items():
    np.testing.assert_array_equal(t, a[name], err_msg=name)
  assert {k for k in a if not k.endswith(".attn.bias")} <= set(b) | {"lm_head.weight"}
  # A second conversion into the same place is refused instead of overwriting.
  assert main(["convert", "--from-hf", src, "--output", str(tmp_path / "ckpt")]) == 2


def test_convert_to_hf_of_a_step_without_readable_metadata_is_one_line(tmp_path, capsys):
  step = tmp_path / "ckpt" / "0"
  (step / "state").mkdir(parents=True)
  (step / "meta").mkdir()
  (step / "meta" / "metadata").write_text("{not json")
  assert main(["convert", "--to-hf", str(step), "--output", str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and "no model config in meta/metadata" in err and len(err.splitlines()) == 1
