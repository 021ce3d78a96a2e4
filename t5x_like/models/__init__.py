"""Model families. `create_model(cfg, rngs)` builds the family named by `cfg.family`."""

from __future__ import annotations

from flax import nnx

from t5x_like.config import ConfigError, ModelConfig


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
