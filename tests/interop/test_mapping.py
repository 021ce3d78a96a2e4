"""Interop without torch: our params -> HF files -> our params, sharding, error messages."""

import json
import os

import jax
import ml_dtypes
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from t5x_like import config as C
from t5x_like.interop import config_from_hf, export_hf, export_type, hf_token_ids, import_hf
from t5x_like.interop.mapping import flatten, linear, same
from t5x_like.models import create_model

GPT2 = dict(family="decoder", position="learned", norm="layernorm", mlp_activation="gelu",
            use_bias=True, max_len=16)
BERT = dict(family="encoder", position="learned", norm="layernorm", norm_position="post",
            mlp_activation="gelu", gelu_approximate=False, use_bias=True, type_vocab_size=2,
            embed_norm=True, mlm_head=True, max_len=16, norm_eps=1e-12)
T5 = dict(family="encoder_decoder", position="relative", attention_scale=1.0, use_bias=False,
          num_decoder_layers=3, head_dim=4)
LLAMA = dict(family="decoder", position="rope", norm="rmsnorm", mlp_activation="swiglu", use_bias=False,
             num_kv_heads=1, head_dim=8, tie_embeddings=False, rope_theta=5e5, max_len=16)
LLAMA_VARIANTS = [LLAMA,
                  dict(LLAMA, rope_scaling="llama3", rope_scaling_factor=32.0, rope_original_max_len=64),
                  dict(LLAMA, qkv_bias=True, tie_embeddings=True),  # qwen2
                  dict(LLAMA, sliding_window=4)]  # mistral
T5_VARIANTS = [dict(T5, mlp_activation="relu"),
               dict(T5, mlp_activation="gated_gelu", tie_embeddings=False, rescale_decoder_output=False),
               dict(T5, mlp_activation="gated_gelu", tie_embeddings=True, rescale_decoder_output=False)]


def _random_params(**fields):
  cfg = C.ModelConfig(vocab_size=37, d_model=16, num_layers=2, num_heads=2, d_ff=24, **fields)
  params = nnx.to_pure_dict(nnx.split(create_model(cfg, nnx.Rngs(0)))[1])
  # Fresh norms are all ones and biases all zeros; random values catch swapped tensors.
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda a: rng.normal(size=a.shape).astype(np.float32), params)
  return cfg, params


def _assert_same(a: dict, b: dict):
  fa, fb = flatten(a), flatten(b)
  assert fa.keys() == fb.keys()
  for k in fa:
    np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg="/".join(k))


@pytest.mark.parametrize("fields", [GPT2, BERT] + T5_VARIANTS + LLAMA_VARIANTS)
def test_our_params_round_trip_through_hf_files(fields, tmp_path):
  cfg, params = _random_params(**fields)
  export_hf(params, cfg, str(tmp_path))
  assert config_from_hf(str(tmp_path)) == cfg
  _assert_same(import_hf(str(tmp_path)), params)


@pytest.mark.parametrize("fields,hf_type,ids", [
    (GPT2, "gpt2", {"bos_token_id": 0, "eos_token_id": 1}),
    (BERT, "bert", {"pad_token_id": 0}),
    (T5_VARIANTS[0], "t5", {"pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0}),
    (LLAMA_VARIANTS[2], "qwen2", {"bos_token_id": 0, "eos_token_id": 1}),
    (LLAMA_VARIANTS[3], "mistral", {"bos_token_id": 0, "eos_token_id": 1}),
])
def test_exports_declare_the_type_and_our_pipelines_token_ids(fields, hf_type, ids, tmp_path):
  """A model trained here: pad 0 starts every decoder input, eos is 1; a decoder declares no pad
  id, which HF generate would use to mask the leading 0 out of the prompt."""
  cfg, params = _random_params(**fields)
  assert export_type(cfg) == hf_type
  export_hf(params, cfg, str(tmp_path))
  with open(tmp_path / "config.json") as f:
    written = json.load(f)
  with open(tmp_path / "generation_config.json") as f:
    assert json.load(f) == ids
  assert written["model_type"] == hf_type
  assert {k: written[k] for k in ids} == ids and written.get("pad_token_id", 0) == ids.get("pad_token_id")


def test_token_ids_come_from_the_source_checkpoint(tmp_path):
  cfg, params = _random_params(**GPT2)
  src, out = tmp_path / "src", tmp_path / "out"
  export_hf(params, cfg, str(src), token_ids={"bos_token_id": 50, "eos_token_id": 36})
  (src / "generation_config.json").write_text(json.dumps({"eos_token_id": 9, "pad_token_id": 3}))
  ids = hf_token_ids(str(src))  # config.json first, generation_config.json fills the gaps
  assert ids == {"bos_token_id": 50, "eos_token_id": 36, "pad_token_id": 3}
  export_hf(params, cfg, str(out), token_ids=ids)
  with open(out / "config.json") as f:
    written = json.load(f)
  assert {k: written[k] for k in ids} == ids


def test_a_llama_style_model_exports_as_any_type_that_expresses_it(tmp_path):
  cfg, params = _random_params(**LLAMA)
  export_hf(params, cfg, str(tmp_path / "m"), family="mistral")
  with open(tmp_path / "m" / "config.json") as f:
    assert json.load(f)["sliding_window"] is None
  assert config_from_hf(str(tmp_path / "m")) == cfg
  with pytest.raises(C.ConfigError, match="qwen2 always has q/k/v biases"):
    export_hf(params, cfg, str(tmp_path / "q"), family="qwen2")
  cfg, params = _random_params(**dict(LLAMA, sliding_window=4))
  with pytest.raises(C.ConfigError, match="sliding_window=4 exports as mistral, not llama"):
    export_hf(params, cfg, str(tmp_path / "l"), family="llama")
  with pytest.raises(C.ConfigError, match="HF model type 'gpt3' is not supported; use one of gpt2, bert, t5"):
    export_hf(params, cfg, str(tmp_path / "g"), family="gpt3")


def test_sharded_export_reads_back(tmp_path):
  cfg, params = _random_params(**GPT2)
  files = export_hf(params, cfg, str(tmp_path), max_shard_bytes=4096)
  shards = [f for f in files if f.endswith(".safetensors")]
  assert len(shards) > 2 and os.path.isfile(tmp_path / "model.safetensors.index.json")
  assert sorted(files) == sorted(os.listdir(tmp_path))  # the index and both configs included
  with open(tmp_path / "model.safetensors.index.json") as f:
    assert set(json.load(f)["weight_map"].values()) == set(shards)
  _assert_same(import_hf(str(tmp_path), "gpt2", cfg), params)


def test_bfloat16_export(tmp_path):
  cfg, params = _random_params(**BERT)
  export_hf(params, cfg, str(tmp_path), dtype="bfloat16")
  tensors = load_file(str(tmp_path / "model.safetensors"))
  assert all(t.dtype == ml_dtypes.bfloat16 for t in tensors.values())
  got = import_hf(str(tmp_path))  # read back into float32 parameters
  want = jax.tree.map(lambda a: a.astype(ml_dtypes.bfloat16).astype(np.float32), params)
  _assert_same(got, want)


def test_unknown_tensors_and_wrong_shapes_are_reported(tmp_path):
  cfg, params = _random_params(**GPT2)
  export_hf(params, cfg, str(tmp_path))
  path = str(tmp_path / "model.safetensors")
  tensors = load_file(path)
  save_file(dict(tensors, **{"transformer.h.0.attn.rotary.weight": np.zeros(3, np.float32)}), path)
  with pytest.raises(ValueError, match="rotary"):
    import_hf(str(tmp_path))
  tensors["transformer.wpe.weight"] = tensors["transformer.wpe.weight"][:8]
  save_file(tensors, path)
  with pytest.raises(ValueError, match="wpe.weight"):
    import_hf(str(tmp_path), cfg=cfg)


def test_rules_check_shapes_before_reshaping():
  with pytest.raises(ValueError, match="shape"):
    same("x", "t").to_ours(np.zeros((4, 3)), (3, 4))
  with pytest.raises(ValueError, match="shape"):
    linear("x", "t").to_ours(np.zeros((8, 6)), (8, 2, 3))  # same size, transposed layout
  w = np.arange(24.0).reshape(6, 4)  # torch Linear: [out = heads * head_dim, in]
  (ours,) = linear("x", "t").to_ours(w, (4, 2, 3))
  np.testing.assert_array_equal(ours[:, 1, 2], w[5])
  np.testing.assert_array_equal(linear("x", "t").to_hf(ours), w)


def test_unsupported_configs_do_not_export(tmp_path):
  cfg, params = _random_params(position="rope")  # a Llama-style decoder is not GPT-2
  with pytest.raises(C.ConfigError, match="GPT-2"):
    export_hf(params, cfg, str(tmp_path), family="gpt2")
  cfg, params = _random_params(position="rope", mlp_activation="gelu")  # nor Llama without SwiGLU
  with pytest.raises(C.ConfigError, match="only Llama-style decoders"):
    export_hf(params, cfg, str(tmp_path))
