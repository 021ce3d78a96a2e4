"""Typed run configuration: dataclasses, loading `configs/*.py`, overrides and validation.

A config file is a Python module with `get_config() -> Config`. Command-line overrides
have the form `--config.optimizer.learning_rate=1e-3`; each is parsed against the type
of the field it names, and an unknown key is rejected with the nearest valid spelling.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import os
import typing
from typing import Any


class ConfigError(ValueError):
  """A user error in a config file or override; the CLI prints it without a traceback."""


@dataclasses.dataclass
class ModelConfig:
  family: str = "decoder"  # decoder | encoder | encoder_decoder
  vocab_size: int = 512  # must equal the tokenizer's vocabulary size (checked at start)
  d_model: int = 128  # width of the residual stream
  num_layers: int = 2  # layers of the (only, or encoder) stack
  num_decoder_layers: int = 0  # encoder_decoder only; 0 means num_layers
  num_heads: int = 4  # query heads
  num_kv_heads: int = 0  # key/value heads for grouped-query attention; 0 means num_heads
  head_dim: int = 0  # 0 means d_model // num_heads
  d_ff: int = 512  # hidden width of the MLP
  mlp_activation: str = "swiglu"  # swiglu | gated_gelu | gelu | relu
  norm: str = "rmsnorm"  # rmsnorm | layernorm
  norm_position: str = "pre"  # pre | post
  norm_eps: float = 1e-6
  position: str = "rope"  # rope | learned | relative | none
  max_len: int = 2048  # table size for learned positions
  rope_theta: float = 10_000.0
  relative_buckets: int = 32  # T5 relative position bias
  relative_max_distance: int = 128
  tie_embeddings: bool = True  # output projection shares the input embedding
  use_bias: bool = False  # biases in dense layers (GPT-2/BERT style)
  dropout_rate: float = 0.0
  dtype: str = "float32"  # compute dtype: float32 | bfloat16
  param_dtype: str = "float32"  # master weights
  scan_layers: bool = True  # run the stack with jax.lax.scan (compile time flat in depth)
  remat_policy: str = "none"  # none | full | dots | dots_no_batch
  attention_impl: str = "xla"  # xla | cudnn (jax.nn.dot_product_attention implementation)
  z_loss: float = 0.0  # coefficient of log(Z)^2 in the loss
  init_std: float = 0.02
  # Family details needed to reproduce published models (BERT, GPT-2, T5); see docs/models.md.
  gelu_approximate: bool = True  # tanh GELU (GPT-2 "gelu_new", T5 v1.1); false: exact erf GELU (BERT)
  attention_scale: float = 0.0  # multiplies q.k; 0 means head_dim**-0.5; T5 uses 1.0 (folded into init)
  type_vocab_size: int = 0  # encoder: BERT token-type (sentence A/B) embeddings; 0 means none
  embed_norm: bool = False  # normalise the summed embeddings before the stack (BERT)
  mlm_head: bool = False  # encoder: dense + gelu + norm, then the projection plus a vocab bias (BERT)
  rescale_decoder_output: bool = True  # encoder_decoder: final states * d_model**-0.5 before the head (T5 v1.0)


@dataclasses.dataclass
class DataConfig:
  source: str = "synthetic"  # synthetic | text | jsonl | tfrecord | tfds
  train_files: str = ""  # glob of text/JSONL files (source=text|jsonl)
  eval_files: str = ""  # glob for the held-out split
  jsonl_field: str = "text"
  tfds_name: str = ""  # e.g. "c4/en:3.1.0" (source=tfds)
  tfds_data_dir: str = ""
  tfds_text_key: str = "text"
  tfds_train_split: str = "train"
  tfds_eval_split: str = "validation"
  corpus_dir: str = ""  # synthetic corpus location; empty means WORKDIR/corpus
  synthetic_train_docs: int = 20_000
  synthetic_eval_docs: int = 1_000
  tokenizer_path: str = ""  # SentencePiece .model; empty with synthetic means train one
  seq_len: int = 128
  objective: str = "causal_lm"  # causal_lm | prefix_lm | mlm | span_corruption
  shuffle_buffer: int = 10_000
  seed: int = 0
  num_parallel_calls: int = -1  # -1 means tf.data.AUTOTUNE
  # files: each host reads its own files (scales; batches depend on the host count).
  # rows: every host reads the whole stream and keeps its slice of each global batch, so
  # the batches are identical for any host count (costs host_count x the input work).
  host_split: str = "files"
  # Objectives (docs/data.md). Sentinels follow T5: `extra_ids` ids are appended after the
  # tokenizer's pieces and sentinel i is id vocab + extra_ids - 1 - i (the end of the
  # vocabulary); model.vocab_size must cover them. MLM uses sentinel 0 as its mask token
  # unless the tokenizer has a "<mask>" or "[MASK]" piece.
  extra_ids: int = 100
  mlm_probability: float = 0.15  # fraction of (maskable) tokens selected for prediction
  mlm_mask_rate: float = 0.8  # of the selected: replaced by the mask token
  mlm_random_rate: float = 0.1  # of the selected: replaced by a random token (rest unchanged)
  noise_density: float = 0.15  # span corruption: fraction of tokens in noise spans
  mean_noise_span_length: float = 3.0
  targets_len: int = 0  # span corruption decoder length; 0 derives it from seq_len like T5
  # Sources beyond text/JSONL (issue 6): TFRecord files of tf.train.Example with a bytes
  # feature, mixtures of several sources, and what to do with undecodable lines.
  tfrecord_feature: str = "text"
  mixture: list = dataclasses.field(default_factory=list)  # [{"weight": w, <data fields>...}, ...]
  skip_bad_lines: bool = False  # skip (and count) non-UTF-8 lines instead of stopping


@dataclasses.dataclass
class OptimizerConfig:
  learning_rate: float = 3e-3  # peak learning rate
  warmup_steps: int = 100
  schedule: str = "cosine"  # cosine | linear | constant
  end_lr_fraction: float = 0.1  # final learning rate as a fraction of the peak
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  weight_decay: float = 0.1  # decoupled; not applied to norms, biases or scalars
  clip_norm: float = 1.0  # global-norm clipping; 0 disables


@dataclasses.dataclass
class MeshConfig:
  data: int = -1  # -1 means all devices not used by the other axes
  fsdp: int = 1
  tensor: int = 1
  # Across slices/hosts (DCN): each mesh axis is dcn_x * x devices, the DCN part slowest.
  # E.g. 4 hosts x 8 GPUs as pure data parallelism across hosts: dcn_data=4, fsdp=8.
  dcn_data: int = 1
  dcn_fsdp: int = 1
  dcn_tensor: int = 1
  rules: str = "fsdp"  # dp | fsdp | fsdp_tp | tp | custom
  custom_rules: list = dataclasses.field(default_factory=list)  # [[logical, mesh_axis|null], ...]


@dataclasses.dataclass
class CheckpointConfig:
  enabled: bool = True
  every_steps: int = 500
  max_to_keep: int = 3
  keep_period: int = 0  # additionally keep every N-th step forever; 0 disables
  async_save: bool = True
  restore_from: str = ""  # a step number or a checkpoint directory; empty means latest
  skip_corrupt: bool = False  # fall back to the newest checkpoint that restores, instead of stopping
  init_from: str = ""  # warm start: params only from a checkpoint step dir (new optimizer state)


@dataclasses.dataclass
class TrainConfig:
  steps: int = 1000  # total optimizer steps (the learning-rate schedule spans these)
  stop_at_step: int = 0  # end this invocation after this step (0 = steps); rerun to continue
  batch_size: int = 32  # global, in sequences per optimizer step
  grad_accum_steps: int = 1  # micro-batches per step; batch_size must divide evenly
  log_every: int = 50
  eval_every: int = 200  # 0 disables periodic eval (a final eval still runs)
  eval_batches: int = 8
  skill_eval_examples: int = 64  # prompts scored by greedy decoding at the end (0 disables)
  seed: int = 0
  peak_tflops_per_device: float = 0.0  # for MFU; 0 means look up the device kind
  max_consecutive_nonfinite: int = 5  # stop (after saving) when this many steps in a row are skipped


@dataclasses.dataclass
class Config:
  name: str = "run"
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
  mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
  checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


_CHOICES = {
    "model.family": ("decoder", "encoder", "encoder_decoder"),
    "model.mlp_activation": ("swiglu", "gated_gelu", "gelu", "relu"),
    "model.norm": ("rmsnorm", "layernorm"),
    "model.norm_position": ("pre", "post"),
    "model.position": ("rope", "learned", "relative", "none"),
    "model.dtype": ("float32", "bfloat16", "float16"),
    "model.param_dtype": ("float32", "bfloat16"),
    "model.remat_policy": ("none", "full", "dots", "dots_no_batch"),
    "model.attention_impl": ("xla", "cudnn"),
    "data.source": ("synthetic", "text", "jsonl", "tfrecord", "tfds"),
    "data.objective": ("causal_lm", "prefix_lm", "mlm", "span_corruption"),
    "data.host_split": ("files", "rows"),
    "optimizer.schedule": ("cosine", "linear", "constant"),
    "mesh.rules": ("dp", "fsdp", "fsdp_tp", "tp", "custom"),
}


# The model family each data objective feeds.
OBJECTIVE_FAMILY = {"causal_lm": "decoder", "prefix_lm": "decoder", "mlm": "encoder",
                    "span_corruption": "encoder_decoder"}


# ---------------------------------------------------------------- loading and overrides


def objectives_for(family: str) -> list[str]:
  """The data objectives that feed `family`, the default (the family's pretraining one) first."""
  return [k for k, v in OBJECTIVE_FAMILY.items() if v == family]


def _import_file(path: str, example: str):
  if not os.path.isfile(path):
    raise ConfigError(f"config file not found: {path!r}; pass a path such as {example}")
  spec = importlib.util.spec_from_file_location(f"_t5x_like_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # a broken config file is a user error, shown plainly
    raise ConfigError(f"config file {path} failed to import: {type(e).__name__}: {e}") from e
  return module


def load_model_preset(path: str, name: str) -> ModelConfig:
  """`PRESETS[name]()` of a preset file such as configs/models/gpt.py."""
  presets = getattr(_import_file(path, "configs/models/gpt.py"), "PRESETS", {})
  if name not in presets:
    raise ConfigError(f"{path} has no preset {name!r}; it has {sorted(presets)}")
  return presets[name]()


def load_config_file(path: str) -> Config:
  """Imports a config file and calls its `get_config()`."""
  module = _import_file(path, "configs/tiny/gpt.py")
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path} has no get_config() function")
  cfg = module.get_config()
  if not isinstance(cfg, Config):
    raise ConfigError(f"{path}: get_config() must return t5x_like.config.Config, got {type(cfg).__name__}")
  return cfg


def _field_names(obj) -> list[str]:
  return [f.name for f in dataclasses.fields(obj)]


def _all_keys(obj, prefix="") -> list[str]:
  keys = []
  for f in dataclasses.fields(obj):
    v = getattr(obj, f.name)
    if dataclasses.is_dataclass(v):
      keys.extend(_all_keys(v, prefix + f.name + "."))
    else:
      keys.append(prefix + f.name)
  return keys


_ALIASES = {"lr": "learning_rate", "bs": "batch_size", "wd": "weight_decay", "num_steps": "steps",
            "seq_length": "seq_len", "max_seq_len": "seq_len", "n_layers": "num_layers", "layers": "num_layers",
            "hidden_size": "d_model", "heads": "num_heads", "vocab": "vocab_size"}


def _unknown_key(key: str, cfg: Config) -> ConfigError:
  valid = _all_keys(cfg)
  leaf = key.rsplit(".", 1)[-1]
  alias = [k for k in valid if k.rsplit(".", 1)[-1] == _ALIASES.get(leaf)]
  close = alias[:1] or difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
  if not close:  # try matching the last component alone, e.g. "lr" inside "optimizer."
    leaf = key.rsplit(".", 1)[-1]
    by_leaf = {k.rsplit(".", 1)[-1]: k for k in valid}
    near = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
    close = [by_leaf[near[0]]] if near else []
  hint = f"; did you mean '{close[0]}'?" if close else ""
  return ConfigError(f"unknown config key '{key}'{hint}")


def _parse_value(key: str, text: str, typ: Any, current: Any) -> Any:
  """Parses an override string into the field's declared type."""
  origin = typing.get_origin(typ)
  if typ is bool:
    low = text.strip().lower()
    if low in ("true", "1", "yes", "on"):
      return True
    if low in ("false", "0", "no", "off"):
      return False
    raise ConfigError(f"config key '{key}' expects a bool (true/false), got {text!r}")
  if typ is int:
    try:
      return int(text.replace("_", ""))
    except ValueError:
      try:
        f = float(text)
      except ValueError:
        f = None
      if f is not None and f.is_integer():
        return int(f)
      raise ConfigError(f"config key '{key}' expects an int, got {text!r}") from None
  if typ is float:
    try:
      return float(text)
    except ValueError:
      raise ConfigError(f"config key '{key}' expects a float, got {text!r}") from None
  if typ is str:
    return text
  if typ is list or origin is list:
    try:
      value = json.loads(text)
    except json.JSONDecodeError:
      raise ConfigError(f"config key '{key}' expects a JSON list, got {text!r}") from None
    if not isinstance(value, list):
      raise ConfigError(f"config key '{key}' expects a JSON list, got {text!r}")
    return value
  raise ConfigError(f"config key '{key}' cannot be overridden from the command line")


def _resolved_types(cls) -> dict[str, Any]:
  return typing.get_type_hints(cls)


def apply_override(cfg: Config, key: str, text: str) -> None:
  """Sets `cfg.<key>` from the string `text`, checking the key and the type."""
  parts = key.split(".")
  obj = cfg
  for i, part in enumerate(parts):
    if not dataclasses.is_dataclass(obj) or part not in _field_names(obj):
      raise _unknown_key(key, cfg)
    if i == len(parts) - 1:
      typ = _resolved_types(type(obj))[part]
      current = getattr(obj, part)
      if dataclasses.is_dataclass(current):
        raise ConfigError(f"config key '{key}' is a section; set one of its fields, e.g. '{key}.{_field_names(current)[0]}'")
      setattr(obj, part, _parse_value(key, text, typ, current))
    else:
      obj = getattr(obj, part)


def parse_overrides(args: list[str]) -> list[tuple[str, str]]:
  """Splits `--config.a.b=v` (or `--config.a.b v`) arguments into (key, value) pairs."""
  pairs = []
  i = 0
  while i < len(args):
    arg = args[i]
    if not arg.startswith("--config."):
      raise ConfigError(f"unexpected argument {arg!r}; overrides look like --config.train.steps=100")
    body = arg[len("--config."):]
    if "=" in body:
      key, value = body.split("=", 1)
    else:
      if i + 1 >= len(args):
        raise ConfigError(f"override {arg!r} has no value; write {arg}=VALUE")
      key, value = body, args[i + 1]
      i += 1
    pairs.append((key, value))
    i += 1
  return pairs


def _check_types(obj, prefix="") -> None:
  """Checks values set in config files (not only overrides) against the declared types."""
  hints = _resolved_types(type(obj))
  for f in dataclasses.fields(obj):
    v = getattr(obj, f.name)
    key = prefix + f.name
    typ = hints[f.name]
    if dataclasses.is_dataclass(typ):
      if not isinstance(v, typ):
        raise ConfigError(f"config key '{key}' must be a {typ.__name__}, got {type(v).__name__}")
      _check_types(v, key + ".")
      continue
    ok = {
        bool: isinstance(v, bool),
        int: isinstance(v, int) and not isinstance(v, bool),
        float: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: isinstance(v, str),
    }.get(typ, isinstance(v, list) if (typ is list or typing.get_origin(typ) is list) else True)
    if not ok:
      raise ConfigError(f"config key '{key}' expects {getattr(typ, '__name__', typ)}, got {type(v).__name__} {v!r}")
    if typ is float and isinstance(v, int):
      setattr(obj, f.name, float(v))


def validate(cfg: Config) -> Config:
  """Checks types, choices and cross-field constraints; raises ConfigError with the fix."""
  _check_types(cfg)
  for key, choices in _CHOICES.items():
    section, name = key.split(".")
    value = getattr(getattr(cfg, section), name)
    if value not in choices:
      close = difflib.get_close_matches(str(value), choices, n=1)
      hint = f"; did you mean '{close[0]}'?" if close else ""
      raise ConfigError(f"config key '{key}' is {value!r}; expected one of {', '.join(choices)}{hint}")
  m, t, d = cfg.model, cfg.train, cfg.data
  positive = {
      "model.vocab_size": m.vocab_size, "model.d_model": m.d_model, "model.num_layers": m.num_layers,
      "model.num_heads": m.num_heads, "model.d_ff": m.d_ff, "data.seq_len": d.seq_len,
      "train.steps": t.steps, "train.batch_size": t.batch_size,
      "train.grad_accum_steps": t.grad_accum_steps, "train.log_every": t.log_every,
  }
  for key, value in positive.items():
    if value <= 0:
      raise ConfigError(f"config key '{key}' must be positive, got {value}")
  if m.head_dim == 0 and m.d_model % m.num_heads:
    raise ConfigError(
        f"model.d_model={m.d_model} is not divisible by model.num_heads={m.num_heads}; "
        "change one of them or set model.head_dim explicitly")
  kv = m.num_kv_heads or m.num_heads
  if m.num_heads % kv:
    raise ConfigError(f"model.num_heads={m.num_heads} must be a multiple of model.num_kv_heads={kv}")
  if t.batch_size % t.grad_accum_steps:
    raise ConfigError(
        f"train.batch_size={t.batch_size} is not divisible by train.grad_accum_steps={t.grad_accum_steps}")
  if m.position == "learned" and d.seq_len > m.max_len:
    raise ConfigError(f"data.seq_len={d.seq_len} exceeds model.max_len={m.max_len} for learned positions")
  if m.position == "rope" and (m.head_dim or m.d_model // m.num_heads) % 2:
    raise ConfigError("RoPE needs an even head dimension; change model.d_model/num_heads or model.head_dim")
  if d.source in ("text", "jsonl", "tfrecord") and not d.train_files and not d.mixture:
    raise ConfigError(f"data.source={d.source!r} needs data.train_files (a glob of input files)")
  if d.source == "tfds" and not d.tfds_name and not d.mixture:
    raise ConfigError("data.source='tfds' needs data.tfds_name, e.g. --config.data.tfds_name=c4/en:3.1.0")
  if d.mixture and d.source == "synthetic":
    raise ConfigError("data.mixture is set but data.source='synthetic'; set data.source to the entries' "
                      "default source (text, jsonl, tfrecord or tfds)")
  for i, (_, c) in enumerate(mixture_components(d)):  # each entry is checked like data itself
    key = f"data.mixture[{i}]"
    if c.source in ("text", "jsonl", "tfrecord") and not c.train_files:
      raise ConfigError(f"{key} (source={c.source!r}) needs train_files (a glob of input files)")
    if c.source == "tfds" and not c.tfds_name:
      raise ConfigError(f"{key} (source='tfds') needs tfds_name, e.g. \"tfds_name\": \"c4/en:3.1.0\"")
    if c.source == "synthetic":
      raise ConfigError(f"{key} has source='synthetic', which cannot be mixed; use its files with source='text'")
    if OBJECTIVE_FAMILY[c.objective] != m.family:
      raise ConfigError(f"{key} has objective={c.objective!r}, which feeds the {OBJECTIVE_FAMILY[c.objective]} "
                        f"family but model.family={m.family!r}")
  if d.source != "synthetic" and not d.tokenizer_path:
    raise ConfigError(f"data.source={d.source!r} needs data.tokenizer_path (train one with `t5x-like tokenizer train`)")
  if OBJECTIVE_FAMILY[d.objective] != m.family:
    fits = objectives_for(m.family)
    raise ConfigError(f"data.objective={d.objective!r} feeds the {OBJECTIVE_FAMILY[d.objective]} family but "
                      f"model.family={m.family!r}; use data.objective={' or '.join(map(repr, fits))}")
  if d.extra_ids < 0:
    raise ConfigError(f"data.extra_ids must be >= 0, got {d.extra_ids}")
  c = cfg.checkpoint
  for key, value, low in (("checkpoint.every_steps", c.every_steps, 1), ("checkpoint.max_to_keep", c.max_to_keep, 1),
                          ("checkpoint.keep_period", c.keep_period, 0),
                          ("train.max_consecutive_nonfinite", t.max_consecutive_nonfinite, 0)):
    if value < low:
      raise ConfigError(f"config key '{key}' must be >= {low}, got {value}")
  if c.restore_from and not c.restore_from.isdigit() and c.init_from:
    raise ConfigError("set only one of checkpoint.restore_from=PATH (params, optimizer state and step) and "
                      "checkpoint.init_from=PATH (params only, a fresh start)")
  if cfg.mesh.rules == "custom" and not cfg.mesh.custom_rules:
    raise ConfigError("mesh.rules='custom' needs mesh.custom_rules, e.g. [[\"batch\", \"data\"], [\"embed\", null]]")
  return cfg


# Data fields every mixture component shares: one tokenizer and vocabulary, one seed, one
# way of splitting rows across hosts.
MIXTURE_SHARED = ("mixture", "tokenizer_path", "seed", "host_split", "corpus_dir",
                  "synthetic_train_docs", "synthetic_eval_docs")


def mixture_components(d: DataConfig) -> list[tuple[float, DataConfig]]:
  """(weight, config) of each `data.mixture` entry: its fields over those of `data`."""
  names = _field_names(d)
  out = []
  for i, entry in enumerate(d.mixture):
    key = f"data.mixture[{i}]"
    if not isinstance(entry, dict):
      raise ConfigError(f"{key} must be a dict such as {{\"weight\": 0.5, \"train_files\": \"a/*.txt\"}}, "
                        f"got {entry!r}")
    for k in entry:
      if k != "weight" and k not in names:
        close = difflib.get_close_matches(k, names + ["weight"], n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown key '{k}' in {key}{hint}")
      if k in MIXTURE_SHARED:
        raise ConfigError(f"{key} sets '{k}', which all mixture components share; set data.{k} instead")
    w = entry.get("weight")
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w < float("inf"):
      raise ConfigError(f"{key} needs a positive number \"weight\", got {w!r}")
    component = dataclasses.replace(d, mixture=[], **{k: v for k, v in entry.items() if k != "weight"})
    _check_types(component, key + ".")
    for name in ("source", "objective"):
      choices = _CHOICES[f"data.{name}"]
      if getattr(component, name) not in choices:
        raise ConfigError(f"{key}.{name} is {getattr(component, name)!r}; expected one of {', '.join(choices)}")
    out.append((float(w), component))
  return out


def build_config(path: str, overrides: list[str] | None = None) -> Config:
  """Loads a config file, applies `--config.x=v` overrides and validates the result."""
  cfg = load_config_file(path)
  for key, value in parse_overrides(list(overrides or [])):
    apply_override(cfg, key, value)
  return validate(cfg)


def to_dict(cfg: Config) -> dict:
  return dataclasses.asdict(cfg)


def from_dict(d: dict) -> Config:
  """Rebuilds a Config from `to_dict` output (e.g. WORKDIR/config.json)."""

  def build(cls, values):
    hints = _resolved_types(cls)
    kwargs = {}
    for k, v in values.items():
      if k not in hints:
        raise ConfigError(f"unknown config key '{k}' in saved config")
      kwargs[k] = build(hints[k], v) if dataclasses.is_dataclass(hints[k]) else v
    return cls(**kwargs)

  return build(Config, d)


def save_json(cfg: Config, path: str) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(to_dict(cfg), f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def replace(cfg: Config, **sections: dict) -> Config:
  """Returns a copy with fields replaced per section: replace(cfg, train=dict(steps=5))."""
  out = from_dict(to_dict(cfg))
  for section, values in sections.items():
    for k, v in values.items():
      if k not in _field_names(getattr(out, section)):
        raise _unknown_key(f"{section}.{k}", out)
      setattr(getattr(out, section), k, v)
  return out


__all__ = [
    "CheckpointConfig", "Config", "ConfigError", "DataConfig", "MeshConfig", "ModelConfig",
    "OptimizerConfig", "TrainConfig", "apply_override", "build_config", "from_dict",
    "load_config_file", "mixture_components", "parse_overrides", "replace", "save_json", "to_dict", "validate",
]
