"""`t5x-like convert --from-hf` then `--to-hf` reproduces every tensor of a HF checkpoint."""

import json
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


def _json(path):
  with open(path) as f:
    return json.load(f)


def _one_error_line(capsys) -> str:
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and len(err.splitlines()) == 1, err
  return err


def test_convert_round_trip_through_orbax(tmp_path, capsys):
  cfg = transformers.GPT2Config(vocab_size=101, n_positions=24, n_embd=32, n_layer=2, n_head=4,
                                bos_token_id=5, eos_token_id=7)
  model = transformers.GPT2LMHeadModel(cfg)
  src = str(tmp_path / "hf")
  model.save_pretrained(src, safe_serialization=True)
  assert main(["convert", "--from-hf", src, "--family", "gpt2", "--output", str(tmp_path / "ckpt")]) == 0
  assert os.path.isdir(tmp_path / "ckpt" / "0" / "state")
  assert main(["convert", "--to-hf", str(tmp_path / "ckpt" / "0"), "--output", str(tmp_path / "back")]) == 0
  a, b = _tensors(src), _tensors(str(tmp_path / "back"))
  for name, t in b.items():
    np.testing.assert_array_equal(t, a[name], err_msg=name)
  assert {k for k in a if not k.endswith(".attn.bias")} <= set(b) | {"lm_head.weight"}
  # The token ids survive in config.json and generation_config.json.
  written = _json(tmp_path / "back" / "config.json")
  assert (written["bos_token_id"], written["eos_token_id"]) == (5, 7)
  generation = transformers.GenerationConfig.from_pretrained(str(tmp_path / "back"))
  assert (generation.bos_token_id, generation.eos_token_id) == (5, 7)
  # Sharded: every file written is listed, the index included, and transformers reads it.
  capsys.readouterr()
  assert main(["convert", "--to-hf", str(tmp_path / "ckpt" / "0"), "--shard-size", "20KB",
               "--output", str(tmp_path / "sharded")]) == 0
  files = sorted(os.listdir(tmp_path / "sharded"))
  assert "model.safetensors.index.json" in files and len(files) > 4
  assert capsys.readouterr().out.strip().endswith(", ".join(
      ["config.json", "generation_config.json"] + [f for f in files if f.endswith(".safetensors")]
      + ["model.safetensors.index.json"]))
  reloaded = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "sharded"))
  np.testing.assert_array_equal(reloaded.lm_head.weight.detach().numpy(), a["transformer.wte.weight"])
  # A second conversion into the same place is refused instead of overwriting.
  assert main(["convert", "--from-hf", src, "--output", str(tmp_path / "ckpt")]) == 2


def test_a_mistral_stays_a_mistral(tmp_path):
  """Without a window a Mistral is a Llama to our config; the step remembers the type."""
  cfg = transformers.MistralConfig(vocab_size=101, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, sliding_window=None)
  src = str(tmp_path / "hf")
  transformers.MistralForCausalLM(cfg).save_pretrained(src, safe_serialization=True)
  assert main(["convert", "--from-hf", src, "--output", str(tmp_path / "ckpt")]) == 0
  step = str(tmp_path / "ckpt" / "0")
  assert main(["convert", "--to-hf", step, "--output", str(tmp_path / "back")]) == 0
  assert _json(tmp_path / "back" / "config.json")["model_type"] == "mistral"
  assert main(["convert", "--to-hf", step, "--family", "llama", "--output", str(tmp_path / "llama")]) == 0
  assert _json(tmp_path / "llama" / "config.json")["model_type"] == "llama"
  a, b = _tensors(src), _tensors(str(tmp_path / "llama"))
  assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("args,message", [
    (["--family", "decoder"], "--family 'decoder' is not a supported HF model type; use one of gpt2, bert, t5, "
                              "llama, mistral, qwen2"),
    (["--family", "llama"], "config.json says model_type='gpt2', not 'llama'"),
    (["--shard-size", "2GB"], "--shard-size applies to --to-hf only"),
])
def test_convert_from_hf_errors_are_one_line(args, message, tmp_path, capsys):
  src = str(tmp_path / "hf")
  transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=11, n_positions=8, n_embd=8, n_layer=1,
                                                       n_head=2)).save_pretrained(src)
  capsys.readouterr()  # transformers' progress bar
  assert main(["convert", "--from-hf", src, *args, "--output", str(tmp_path / "ckpt")]) == 2
  assert message in _one_error_line(capsys)
  assert not os.path.exists(tmp_path / "ckpt")


@pytest.mark.parametrize("size", ["lots", "0", "-2GB", "2PB", "GB", "0.5"])
def test_bad_shard_sizes_are_one_line(size, tmp_path, capsys):
  out = str(tmp_path / "o")
  assert main(["convert", "--to-hf", str(tmp_path), f"--shard-size={size}", "--output", out]) == 2
  assert f"--shard-size {size!r} is not a size" in _one_error_line(capsys)


def test_shard_sizes_parse():
  from t5x_like.cli_args import byte_size
  assert [byte_size(s) for s in ("2GB", "500mb", "1GiB", "1.5 KB", "123", "2e9")] == [
      2 * 10**9, 500 * 10**6, 2**30, 1500, 123, 2 * 10**9]


def test_convert_to_hf_of_a_step_without_readable_metadata_is_one_line(tmp_path, capsys):
  step = tmp_path / "ckpt" / "0"
  (step / "state").mkdir(parents=True)
  (step / "meta").mkdir()
  (step / "meta" / "metadata").write_text("{not json")
  assert main(["convert", "--to-hf", str(step), "--output", str(tmp_path / "out")]) == 2
  assert "meta/metadata is unreadable" in _one_error_line(capsys)
