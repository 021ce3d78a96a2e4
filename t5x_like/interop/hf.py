"""Hugging Face checkpoint import and export: GPT-2, BERT and T5, via safetensors.

  cfg = config_from_hf("/ckpt/gpt2")             # ModelConfig from config.json
  params = import_hf("/ckpt/gpt2", "gpt2", cfg)  # nested dict == nnx.split(model)[1].to_pure_dict()
  export_hf(params, cfg, "/out/gpt2")            # config.json + model.safetensors

No torch and no network: tensors are read and written with `safetensors` one at a time,
per-layer tensors are stacked into (or sliced out of) our leading `layers` axis.
"""

from __future__ import annotations

import json
import os

import jax.numpy as jnp

from t5x_like.config import ConfigError, ModelConfig
from t5x_like.interop import bert, gpt2, t5
from t5x_like.interop.mapping import abstract_params, export_tensors, load_params
from t5x_like.interop.safetensors_io import TensorReader, write_sharded

FAMILIES = {"gpt2": gpt2, "bert": bert, "t5": t5}
# Which HF family each of our model families exports to.
EXPORTS = {"decoder": "gpt2", "encoder": "bert", "encoder_decoder": "t5"}


def _read_config(hf_dir: str) -> dict:
  path = os.path.join(hf_dir, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{hf_dir} has no config.json")
  with open(path) as f:
    return json.load(f)


def _family(hf: dict, family: str | None):
  family = family or hf.get("model_type")
  if family not in FAMILIES:
    raise ConfigError(f"HF family {family!r} is not supported; use one of {', '.join(FAMILIES)}")
  if hf.get("model_type", family) != family:
    raise ConfigError(f"config.json says model_type={hf.get('model_type')!r}, not {family!r}")
  return FAMILIES[family]


def config_from_hf(hf_dir: str, family: str | None = None) -> ModelConfig:
  """Our ModelConfig for a HF checkpoint directory (family defaults to config.json's model_type)."""
  hf = _read_config(hf_dir)
  return _family(hf, family).config_from_hf(hf, TensorReader(hf_dir))


def import_hf(hf_dir: str, family: str | None = None, cfg: ModelConfig | None = None) -> dict:
  """Reads a HF checkpoint into our params dict (float arrays in `cfg.param_dtype`).

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
           for k in mod.ARCH_FIELDS if getattr(cfg, k) != getattr(derived, k)]
  if diffs:
    raise ConfigError(f"the config does not match the checkpoint in {hf_dir}: " + "; ".join(diffs))
  names = reader.keys()
  params = load_params(reader.get, mod.rules(cfg, mod.prefix(names)), abstract_params(cfg))
  leftover = [n for n in reader.unused() if not mod.ignored(n, cfg)]
  if leftover:
    raise ValueError(f"tensors in {hf_dir} that this {mod.MODEL_TYPE} mapping does not use: "
                     + ", ".join(leftover[:8]) + (" ..." if len(leftover) > 8 else ""))
  return params


def load_hf(hf_dir: str, family: str | None = None) -> tuple[ModelConfig, dict]:
  """(config, params) from a HF checkpoint directory."""
  cfg = config_from_hf(hf_dir, family)
  return cfg, import_hf(hf_dir, family, cfg)


def export_hf(params: dict, cfg: ModelConfig, out_dir: str, *, dtype=None,
              max_shard_bytes: int = 5 * 10**9) -> list[str]:
  """Writes config.json and safetensors shards that `from_pretrained` loads.

  `params` is our nested dict (numpy or jax arrays, gathered to this host); `dtype`
  optionally casts every tensor (e.g. "bfloat16" via ml_dtypes). Returns the files written.
  """
  if cfg.family not in EXPORTS:
    raise ConfigError(f"model.family={cfg.family!r} has no HF export")
  mod = FAMILIES[EXPORTS[cfg.family]]
  hf_config = mod.config_to_hf(cfg)
  dtype = None if dtype is None else jnp.dtype(dtype)  # jnp knows "bfloat16"
  tensors = export_tensors(params, mod.rules(cfg, export=True), dtype=dtype)
  files = write_sharded(out_dir, tensors, max_shard_bytes)
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(hf_config, f, indent=2, sort_keys=True)
  return ["config.json"] + files
