"""Model families. `family_class(name)` is the one place a family name becomes its class;
everything else goes through the class's protocol (`models/base.py`)."""

from __future__ import annotations

from flax import nnx

from t5x_like.config import ModelConfig
from t5x_like.errors import ConfigError


def family_class(family: str):
  if family == "decoder":
    from t5x_like.models.decoder import DecoderOnly
    return DecoderOnly
  if family == "encoder":
    from t5x_like.models.encoder import EncoderOnly
    return EncoderOnly
  if family == "encoder_decoder":
    from t5x_like.models.encoder_decoder import EncoderDecoder
    return EncoderDecoder
  raise ConfigError(f"model.family={family!r} is unknown; use decoder, encoder or encoder_decoder")


def create_model(cfg: ModelConfig, rngs: nnx.Rngs):
  return family_class(cfg.family)(cfg, rngs=rngs)


def flops_per_sequence(cfg: ModelConfig, inputs_len: int, targets_len: int = 0, scored: float = 1.0) -> float:
  """Training FLOPs of one row of `cfg`'s family (the MFU numerator); `scored`: the share
  of positions the loss scores (see LanguageModel.flops_per_sequence)."""
  return family_class(cfg.family).flops_per_sequence(cfg, inputs_len, targets_len, scored)
