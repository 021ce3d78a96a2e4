"""Hugging Face checkpoint import and export via safetensors: GPT-2, BERT, T5, and the
Llama-family decoders (Llama 2/3, Mistral, Qwen2).

  cfg = config_from_hf("/ckpt/gpt2")             # ModelConfig from config.json
  params = import_hf("/ckpt/gpt2", "gpt2", cfg)  # nested dict == nnx.split(model)[1].to_pure_dict()
  export_hf(params, cfg, "/out/gpt2", token_ids=hf_token_ids("/ckpt/gpt2"))

No torch and no network: tensors are read and written with `safetensors` one at a time,
per-layer tensors are stacked into (or sliced out of) our leading `layers` axis.
"""

from __future__ import annotations

import json
import os

import jax.numpy as jnp

from t5x_like.config import ConfigError, ModelConfig
from t5x_like.interop import bert, gpt2, llama, t5
from t5x_like.interop.mapping import abstract_params, export_tensors, load_params
from t5x_like.interop.safetensors_io import TensorReader, write_sharded

# HF model_type -> its mapping (a module, or a LlamaFamily for the three Llama-style types).
FAMILIES = {"gpt2": gpt2, "bert": bert, "t5": t5, "llama": llama.LLAMA, "mistral": llama.MISTRAL,
            "qwen2": llama.QWEN2}
HF_TYPES = tuple(FAMILIES)
TOKEN_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
# The ids of a model trained here (data/tokenizer.py): pad 0, which also starts every decoder
# input, and eos 1. Decoder-only exports get no pad id: HF generate masks every input token
# equal to the pad id, and would hide the leading 0 our decoders were trained to see.
PIPELINE_TOKEN_IDS = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 0, "decoder_start_token_id": 0}


def unsupported_type(name) -> ConfigError:
  return ConfigError(f"HF model type {name!r} is not supported; use one of {', '.join(HF_TYPES)}")


def _read_config(hf_dir: str) -> dict:
  path = os.path.join(hf_dir, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{hf_dir} has no config.json")
  with open(path) as f:
    return json.load(f)


def _family(hf: dict, family: str | None):
  family = family or hf.get("model_type")
  if family not in FAMILIES:
    raise unsupported_type(family)
  if hf.get("model_type", family) != family:
    raise ConfigError(f"config.json says model_type={hf.get('model_type')!r}, not {family!r}")
  return FAMILIES[family]


def config_from_hf(hf_dir: str, family: str | None = None) -> ModelConfig:
  """Our ModelConfig for a HF checkpoint directory (family defaults to config.json's model_type)."""
  hf = _read_config(hf_dir)
  return _family(hf, family).config_from_hf(hf, TensorReader(hf_dir))


def _effective(cfg: ModelConfig, field: str):
  """A field's meaning rather than its spelling: 0 kv heads or head_dim means the default,
  and the llama3 numbers mean nothing without llama3 scaling."""
  if field == "num_kv_heads":
    return cfg.num_kv_heads or cfg.num_heads
  if field == "head_dim":
    return cfg.head_dim or cfg.d_model // cfg.num_heads
  if field.startswith("rope_") and field not in ("rope_theta", "rope_scaling") and cfg.rope_scaling == "none":
    return None
  return getattr(cfg, field)


def import_hf(hf_dir: str, family: str | None = None, cfg: ModelConfig | None = None) -> dict:
  """Reads a HF checkpoint into our params dict (float32 arrays, the master weights).

  `cfg` may change how the model runs (dtype, scan, remat, dropout) but must agree with
  config.json on the architecture; omitted, it is derived from config.json.
  """
  hf = _read_config(hf_dir)
  mod = _family(hf, family)
  reader = TensorReader(hf_dir)
  derived = mod.config_from_hf(hf, reader)
  if cfg is None:
    cfg = derived
  diffs = [f"{k}: {getattr(cfg, k)!r} (config.json gives {getattr(derived, k)!r})"
           for k in mod.ARCH_FIELDS if _effective(cfg, k) != _effective(derived, k)]
  if diffs:
    raise ConfigError(f"the config does not match the checkpoint in {hf_dir}: " + "; ".join(diffs))
  names = reader.keys()
  params = load_params(reader.get, mod.rules(cfg, mod.prefix(names)), abstract_params(cfg))
  leftover = [n for n in reader.unused() if not mod.ignored(n, cfg)]
  if leftover:
    raise ValueError(f"tensors in {hf_dir} that this {mod.MODEL_TYPE} mapping does not use: "
                     + ", ".join(leftover[:8]) + (" ..." if len(leftover) > 8 else ""))
  return params


def hf_token_ids(hf_dir: str) -> dict:
  """The special token ids a checkpoint declares: config.json's, with generation_config.json
  filling the ones it lacks; ids declared nowhere are left out."""
  declared = [_read_config(hf_dir)]
  path = os.path.join(hf_dir, "generation_config.json")
  if os.path.isfile(path):
    with open(path) as f:
      declared.append(json.load(f))
  ids = {}
  for d in declared:
    for k in TOKEN_ID_KEYS:
      if ids.get(k) is None and d.get(k) is not None:
        ids[k] = d[k]
  return ids


def source_info(hf_dir: str) -> dict:
  """What a checkpoint says beyond the architecture, which our config cannot hold: its model
  type (a Mistral without a window is a Llama to us) and its special token ids."""
  return {"model_type": _read_config(hf_dir).get("model_type"), "token_ids": hf_token_ids(hf_dir)}


def load_hf(hf_dir: str, family: str | None = None) -> tuple[ModelConfig, dict]:
  """(config, params) from a HF checkpoint directory."""
  cfg = config_from_hf(hf_dir, family)
  return cfg, import_hf(hf_dir, family, cfg)


def export_type(cfg: ModelConfig, family: str | None = None) -> str:
  """The HF model type `cfg` exports as: `family` when given, else the one its architecture
  fits (a decoder: gpt2 with learned positions, else qwen2 with q/k/v biases, mistral with a
  sliding window, llama otherwise)."""
  if family is not None:
    if family not in FAMILIES:
      raise unsupported_type(family)
    return family
  if cfg.family == "encoder":
    return "bert"
  if cfg.family == "encoder_decoder":
    return "t5"
  if cfg.position == "learned":
    return "gpt2"
  return "qwen2" if cfg.qkv_bias else ("mistral" if cfg.sliding_window else "llama")


def export_hf(params: dict, cfg: ModelConfig, out_dir: str, *, dtype=None,
              max_shard_bytes: int = 5 * 10**9, family: str | None = None,
              token_ids: dict | None = None) -> list[str]:
  """Writes config.json, generation_config.json and safetensors shards that `from_pretrained`
  loads; returns the files written (with the shard index when there are shards).

  `params` is our nested dict (numpy or jax arrays, gathered to this host); `dtype`
  optionally casts every tensor (e.g. "bfloat16" via ml_dtypes); `family` is the HF model type
  (default: `export_type`); `token_ids` are the special ids to declare (`hf_token_ids` of the
  checkpoint the params came from), by default those of our data pipeline.
  """
  mod = FAMILIES[export_type(cfg, family)]
  hf_config = mod.config_to_hf(cfg)
  if token_ids is None:
    token_ids = dict(PIPELINE_TOKEN_IDS, pad_token_id=None if cfg.family == "decoder" else 0)
  ids = {k: token_ids.get(k) for k in mod.TOKEN_ID_KEYS}
  hf_config.update(ids)
  dtype = None if dtype is None else jnp.dtype(dtype)  # jnp knows "bfloat16"
  if dtype is not None:
    hf_config["dtype"] = dtype.name
  tensors = export_tensors(params, mod.rules(cfg, export=True), dtype=dtype)
  files = write_sharded(out_dir, tensors, max_shard_bytes)
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(hf_config, f, indent=2, sort_keys=True)
  with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
    json.dump({k: v for k, v in ids.items() if v is not None}, f, indent=2, sort_keys=True)
  return ["config.json", "generation_config.json"] + files
