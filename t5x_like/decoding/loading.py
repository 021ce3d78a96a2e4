"""A checkpoint step directory as a model ready to run, and the tokenizer that goes with it.

The model config is the one saved with the params (`checkpoint/layout.py`), so a
checkpoint needs no config file. A training workdir's checkpoint finds its tokenizer
itself: WORKDIR/tokenizer/spm.model (the built-in corpus's) or the config's
data.tokenizer.path.
"""

from __future__ import annotations

import dataclasses
import os

import jax
from flax import nnx

from t5x_like.config import ModelConfig
from t5x_like.errors import ConfigError, DataError


@dataclasses.dataclass
class Loaded:
  model: nnx.Module  # params on the default device
  cfg: ModelConfig
  step_dir: str
  imported: bool  # converted from Hugging Face (`t5x-like convert --from-hf`), not trained here
  tokenizer: object | None  # data.tokenizer.Tokenizer, with the run's sentinels (extra_ids)
  hf: dict = dataclasses.field(default_factory=dict)  # an import's model_type and token_ids

  @property
  def family(self):
    return type(self.model)


def load(checkpoint: str, tokenizer_path: str = "", *, need_tokenizer: bool = False) -> Loaded:
  from t5x_like import config as config_lib
  from t5x_like.checkpoint import layout
  from t5x_like.checkpoint.params import find_step_dir, read_params
  from t5x_like.models import create_model

  if not checkpoint:
    raise ConfigError("--checkpoint is empty; pass a step directory such as WORKDIR/checkpoints/350")
  step_dir = find_step_dir(checkpoint, "--checkpoint")
  params, model_dict = read_params(step_dir)
  cfg = config_lib.from_dict({"model": model_dict}).model
  if cfg.attention_impl == "cudnn" and jax.devices()[0].platform != "gpu":
    cfg = dataclasses.replace(cfg, attention_impl="xla")  # trained on a GPU, served elsewhere: the same attention
  graphdef, state = nnx.split(nnx.eval_shape(lambda: create_model(cfg, nnx.Rngs(0))))
  try:
    nnx.replace_by_pure_dict(state, jax.device_put(params))
  except (KeyError, ValueError) as e:
    raise ConfigError(f"{step_dir}: its params do not fit its saved model config ({e})") from None
  meta = layout.read_meta(step_dir)
  tok_path = tokenizer_path or find_tokenizer(step_dir, meta)
  tokenizer = None
  if tok_path:
    from t5x_like.data.tokenizer import Tokenizer  # imports TensorFlow: only when needed
    saved_tok = ((meta.get("config") or {}).get("data") or {}).get("tokenizer") or {}
    tokenizer = Tokenizer(tok_path, saved_tok.get("extra_ids", config_lib.TokenizerConfig().extra_ids))
  elif need_tokenizer:
    raise DataError(f"no tokenizer found for {step_dir}; pass --tokenizer PATH (a SentencePiece .model)")
  return Loaded(nnx.merge(graphdef, state), cfg, step_dir, imported=bool(meta.get("source")),
                tokenizer=tokenizer, hf=meta.get("hf") or {})


def find_tokenizer(step_dir: str, meta: dict) -> str:
  """WORKDIR/tokenizer/spm.model for a step under WORKDIR/checkpoints/, else the saved
  config's data.tokenizer.path, else the tokenizer of the run it was warm-started from
  (checkpoint.init_from: a fine-tuned model reads its pretraining's), else "" (none)."""
  from t5x_like.data.prepare import warm_start_tokenizer

  parent = os.path.dirname(step_dir)
  candidates = []
  if os.path.basename(parent) == "checkpoints":
    candidates.append(os.path.join(os.path.dirname(parent), "tokenizer", "spm.model"))
  config = meta.get("config") or {}
  saved = ((config.get("data") or {}).get("tokenizer") or {}).get("path")
  if saved:
    candidates.append(saved)
  init_from = (config.get("checkpoint") or {}).get("init_from")
  if init_from:
    candidates.append(warm_start_tokenizer(init_from))
  return next((p for p in candidates if p and os.path.isfile(p)), "")
