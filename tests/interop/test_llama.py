"""Llama-family parity with Hugging Face `transformers` (PyTorch, random weights, no downloads).

Each case: build a tiny HF model, save it as safetensors, import it, compare fp32 logits
(1e-4), export it back and check every tensor round-trips bit for bit, the config and the
token ids survive, and `from_pretrained` reads our export into the same model. The llama3
and sliding-window cases also check that the feature matters on the test sequence (without
it the logits differ), so a mapping that ignored it could not pass.
"""

import json
import os

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import dataclasses  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from hf_random import randomise  # noqa: E402

from t5x_like.interop import config_from_hf, export_hf, hf_token_ids, load_hf  # noqa: E402
from t5x_like.interop.safetensors_io import TensorReader  # noqa: E402
from t5x_like.models import create_model  # noqa: E402

V, T = 101, 20  # vocabulary (odd on purpose), tokens per row
# Grouped-query attention (4 query heads on 2 key/value heads), two layers.
SHAPE = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2)
# head_dim 8 and theta 5000 give wavelengths 6.3, 53, 444 and 3736 tokens; against an
# original context of 64 (bands at 16 and 64) that is one kept, one blended, two scaled.
LLAMA3 = dict(rope_type="llama3", rope_theta=5000.0, factor=8.0, low_freq_factor=1.0,
              high_freq_factor=4.0, original_max_position_embeddings=64)


def _hf_model(kind):
  t = transformers
  if kind == "llama":  # Llama 2 style: untied head, a non-default theta and eps
    cfg = t.LlamaConfig(**SHAPE, rope_theta=5000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                        max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
    return t.LlamaForCausalLM(cfg)
  if kind == "llama3":
    cfg = t.LlamaConfig(**SHAPE, rope_parameters=dict(LLAMA3), max_position_embeddings=256,
                        bos_token_id=3, eos_token_id=[4, 5])
    return t.LlamaForCausalLM(cfg)
  if kind == "qwen2":  # q/k/v biases, tied head
    cfg = t.Qwen2Config(**dict(SHAPE, num_key_value_heads=1), tie_word_embeddings=True,
                        rope_theta=1e6, eos_token_id=7)
    return t.Qwen2ForCausalLM(cfg)
  cfg = t.MistralConfig(**SHAPE, sliding_window=5, bos_token_id=1, eos_token_id=2)  # window < T
  return t.MistralForCausalLM(cfg)


def _ours(cfg, params):
  graphdef, state = nnx.split(create_model(cfg, nnx.Rngs(0)))
  nnx.replace_by_pure_dict(state, params)
  return nnx.merge(graphdef, state)


def _logits(cfg, params, ids):
  return np.asarray(jax.jit(lambda b: _ours(cfg, params)(b))({"decoder_input_tokens": jnp.asarray(ids)}))


KINDS = ["llama", "llama3", "qwen2", "mistral"]


@pytest.fixture(scope="module", params=KINDS)
def saved(request, tmp_path_factory):
  torch.manual_seed(0)
  model = randomise(_hf_model(request.param))
  path = str(tmp_path_factory.mktemp(request.param))
  model.save_pretrained(path, safe_serialization=True)
  return request.param, model, path


def test_logits_match_transformers(saved):
  kind, hf_model, path = saved
  cfg, params = load_hf(path)
  ids = np.random.default_rng(1).integers(0, V, (2, T))
  with torch.no_grad():
    want = hf_model(input_ids=torch.tensor(ids)).logits.numpy()
  got = _logits(cfg, params, ids)
  assert got.shape == want.shape
  diff = float(np.abs(got - want).max())
  print(f"{kind}: max |ours - transformers| = {diff:.3g} (logits up to {np.abs(want).max():.3g})")
  assert diff < 1e-4
  feature = {"llama3": dict(rope_scaling="none"), "mistral": dict(sliding_window=0)}.get(kind)
  if feature:  # the feature changes these logits, so matching them tests it
    without = _logits(dataclasses.replace(cfg, **feature), params, ids)
    assert float(np.abs(without - want).max()) > 1e-2


def test_config_reads_the_family_details(saved):
  kind, _, path = saved
  cfg = config_from_hf(path)
  assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == ((4, 1, 8) if kind == "qwen2" else (4, 2, 8))
  assert cfg.tie_embeddings == (kind == "qwen2") and cfg.qkv_bias == (kind == "qwen2")
  assert cfg.sliding_window == (5 if kind == "mistral" else 0)
  assert cfg.rope_theta == {"llama": 5000.0, "llama3": 5000.0, "qwen2": 1e6}.get(kind, 10_000.0)
  if kind == "llama3":
    assert (cfg.rope_scaling, cfg.rope_scaling_factor, cfg.rope_low_freq_factor, cfg.rope_high_freq_factor,
            cfg.rope_original_max_len) == ("llama3", 8.0, 1.0, 4.0, 64)
  else:
    assert cfg.rope_scaling == "none"


def test_export_round_trips_bit_exactly(saved, tmp_path):
  kind, hf_model, path = saved
  cfg, params = load_hf(path)
  files = export_hf(params, cfg, str(tmp_path), token_ids=hf_token_ids(path))
  assert files == ["config.json", "generation_config.json", "model.safetensors"]
  original, exported = TensorReader(path), TensorReader(str(tmp_path))
  assert exported.keys() == original.keys()
  for name in original.keys():
    a, b = original.get(name), exported.get(name)
    assert a.dtype == b.dtype and a.shape == b.shape, name
    assert np.array_equal(a, b), name
  assert config_from_hf(str(tmp_path)) == cfg
  with open(tmp_path / "config.json") as f:
    written = json.load(f)
  assert written["model_type"] == kind.rstrip("3")
  for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
    assert written[key] == getattr(hf_model.config, key), key
  gen = transformers.GenerationConfig.from_pretrained(str(tmp_path))
  assert gen.eos_token_id == hf_model.config.eos_token_id
  reloaded = type(hf_model).from_pretrained(str(tmp_path)).eval()
  ids = torch.tensor(np.random.default_rng(2).integers(0, V, (2, T)))
  with torch.no_grad():
    want = hf_model(input_ids=ids).logits.numpy()
    np.testing.assert_array_equal(reloaded(input_ids=ids).logits.numpy(), want)


def test_the_older_rope_spelling_reads_the_same(saved, tmp_path):
  """transformers 4 wrote `rope_theta` and `rope_scaling` instead of `rope_parameters`."""
  kind, _, path = saved
  with open(os.path.join(path, "config.json")) as f:
    hf = json.load(f)
  params = hf.pop("rope_parameters")
  hf["rope_theta"] = params.pop("rope_theta")
  kind_key = params.pop("rope_type")
  hf["rope_scaling"] = None if kind_key == "default" else dict(params, type=kind_key)  # "type": oldest spelling
  (tmp_path / "config.json").write_text(json.dumps(hf))
  os.symlink(os.path.join(path, "model.safetensors"), tmp_path / "model.safetensors")
  assert config_from_hf(str(tmp_path)) == config_from_hf(path)
