"""The typed run configuration: `schema` (the dataclasses, with choices and bounds next to
their fields), `loading` (config files, overrides, JSON) and `validation` (one pass of
every rule). Import from here: `from t5x_like.config import Config, build_config`."""

from t5x_like.config.loading import (
  RENAMED,
  apply_override,
  build_config,
  from_dict,
  load_config_file,
  load_model_preset,
  model_preset,
  parse_overrides,
  replace,
  save_json,
  to_dict,
)
from t5x_like.config.schema import (
  OBJECTIVE_FAMILY,
  OBJECTIVE_HEAD,
  SENTINEL_OBJECTIVES,
  TASK_OBJECTIVES,
  CheckpointConfig,
  Config,
  DataConfig,
  JsonlConfig,
  MeshConfig,
  MixtureEntry,
  MlmConfig,
  ModelConfig,
  OptimizerConfig,
  SpanCorruptionConfig,
  SyntheticConfig,
  TaskConfig,
  TfdsConfig,
  TFRecordConfig,
  TokenizerConfig,
  TrainConfig,
  objectives_for,
)
from t5x_like.config.validation import check_parallelism, mixture_components, validate
from t5x_like.errors import ConfigError

__all__ = [
    "OBJECTIVE_FAMILY", "OBJECTIVE_HEAD", "RENAMED", "SENTINEL_OBJECTIVES", "TASK_OBJECTIVES", "TaskConfig", "CheckpointConfig", "Config", "ConfigError",
    "DataConfig", "JsonlConfig", "MeshConfig", "MixtureEntry", "MlmConfig", "ModelConfig",
    "OptimizerConfig", "SpanCorruptionConfig", "SyntheticConfig", "TFRecordConfig", "TfdsConfig",
    "TokenizerConfig", "TrainConfig", "apply_override", "build_config", "check_parallelism",
    "from_dict", "load_config_file", "load_model_preset", "mixture_components", "model_preset", "objectives_for",
    "parse_overrides", "replace", "save_json", "to_dict", "validate",
]
