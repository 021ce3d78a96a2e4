"""Defaults every run starts from; size presets and run configs modify a copy."""

from t5x_like.config import Config


def get_config() -> Config:
  return Config()
