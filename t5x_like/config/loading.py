"""Config files, `--config.a.b=value` overrides, and the config as JSON.

A config file is a Python module with `get_config() -> Config`. Each override is parsed
against the type of the field it names; an unknown key is rejected with the nearest valid
spelling. Keys renamed when the data section was nested (`data.tfds_name` is now
`data.tfds.name`) are still accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import os
import typing
from typing import Any

from t5x_like.config.schema import Config, MixtureEntry, ModelConfig
from t5x_like.errors import ConfigError

# Old flat data keys -> their place in the nested data section.
RENAMED = {
    "data.jsonl_field": "data.jsonl.field", "data.tfrecord_feature": "data.tfrecord.feature",
    "data.tfds_name": "data.tfds.name", "data.tfds_data_dir": "data.tfds.data_dir",
    "data.tfds_text_key": "data.tfds.text_key", "data.tfds_train_split": "data.tfds.train_split",
    "data.tfds_eval_split": "data.tfds.eval_split", "data.corpus_dir": "data.synthetic.corpus_dir",
    "data.synthetic_train_docs": "data.synthetic.train_docs",
    "data.synthetic_eval_docs": "data.synthetic.eval_docs", "data.tokenizer_path": "data.tokenizer.path",
    "data.extra_ids": "data.tokenizer.extra_ids", "data.mlm_probability": "data.mlm.probability",
    "data.mlm_mask_rate": "data.mlm.mask_rate", "data.mlm_random_rate": "data.mlm.random_rate",
    "data.noise_density": "data.span_corruption.noise_density",
    "data.mean_noise_span_length": "data.span_corruption.mean_span_length",
    "data.targets_len": "data.span_corruption.targets_len",
}

# Common names for fields, used only to suggest the right key.
_SYNONYMS = {"lr": "learning_rate", "bs": "batch_size", "wd": "weight_decay", "num_steps": "steps",
             "seq_length": "seq_len", "max_seq_len": "seq_len", "n_layers": "num_layers",
             "layers": "num_layers", "hidden_size": "d_model", "heads": "num_heads",
             "vocab": "vocab_size"}


# ---------------------------------------------------------------- config files


def import_file(path: str, example: str):
  if not os.path.isfile(path):
    raise ConfigError(f"config file not found: {path!r}; pass a path such as {example}")
  if not path.endswith(".py"):
    raise ConfigError(f"config file {path!r} is not a Python file: configs are .py files with a "
                      f"get_config() function, such as {example}")
  spec = importlib.util.spec_from_file_location(f"_t5x_like_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # a broken config file is a user error, shown plainly
    raise ConfigError(f"config file {path} failed to import: {type(e).__name__}: {e}") from e
  return module


def load_model_preset(path: str, name: str) -> ModelConfig:
  """`PRESETS[name]()` of a preset file such as configs/models/gpt.py."""
  presets = getattr(import_file(path, "configs/models/gpt.py"), "PRESETS", {})
  if name not in presets:
    raise ConfigError(f"{path} has no preset {name!r}; it has {sorted(presets)}")
  return presets[name]()


def preset_dirs() -> list[str]:
  """Where "MODULE:NAME" presets are looked up: $T5X_LIKE_PRESETS, the repository's
  configs/models (beside the package), ./configs/models."""
  here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  dirs = [os.environ.get("T5X_LIKE_PRESETS", ""), os.path.join(here, "configs", "models"),
          os.path.join(os.getcwd(), "configs", "models")]
  return [d for d in dirs if d and os.path.isdir(d)]


def model_preset(spec: str, **overrides) -> ModelConfig:
  """The ModelConfig of preset "MODULE:NAME" (e.g. "gpt:gpt2_small"), with field overrides;
  for config files: `cfg.model = model_preset("llama:llama_1b", max_len=2048)`."""
  module, _, name = spec.partition(":")
  if not module or not name:
    raise ConfigError(f"model.preset={spec!r} must be MODULE:NAME, e.g. gpt:gpt2_small")
  path = next((os.path.join(d, f"{module}.py") for d in preset_dirs()
               if os.path.isfile(os.path.join(d, f"{module}.py"))), "")
  if not path:
    have = sorted({f[:-3] for d in preset_dirs() for f in os.listdir(d) if f.endswith(".py")})
    raise ConfigError(f"model.preset={spec!r}: no preset module {module!r}; available: {have}")
  cfg = dataclasses.replace(load_model_preset(path, name), preset=spec)
  for k, v in overrides.items():
    set_value(cfg, k, v, parse=False)
  return cfg


def load_config_file(path: str) -> Config:
  """Imports a config file and calls its `get_config()`."""
  module = import_file(path, "configs/tiny/gpt.py")
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path} has no get_config() function")
  try:
    cfg = module.get_config()
  except Exception as e:  # a mistake in the config file (a bad field, a failing preset) is the user's
    raise ConfigError(f"{path}: get_config() failed: {type(e).__name__}: {e}") from e
  if not isinstance(cfg, Config):
    raise ConfigError(f"{path}: get_config() must return t5x_like.config.Config, got {type(cfg).__name__}")
  return cfg


# ---------------------------------------------------------------- keys


def field_names(obj) -> list[str]:
  return [f.name for f in dataclasses.fields(obj)]


def all_keys(obj, prefix: str = "") -> list[str]:
  """Every settable dotted key below a dataclass, e.g. 'data.tfds.name'."""
  keys = []
  for f in dataclasses.fields(obj):
    v = getattr(obj, f.name)
    if dataclasses.is_dataclass(v):
      keys.extend(all_keys(v, prefix + f.name + "."))
    else:
      keys.append(prefix + f.name)
  return keys


def unknown_key(key: str, valid: list[str], label: str = "") -> ConfigError:
  """"unknown config key 'key'; did you mean ...?" with the nearest of `valid`; `label`
  replaces "config key 'key'" in the message."""
  leaf = key.rsplit(".", 1)[-1]
  synonym = [k for k in valid if k.rsplit(".", 1)[-1] == _SYNONYMS.get(leaf)]
  close = synonym[:1] or difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
  if not close:  # match the last component alone, e.g. "learnin_rate" inside "optimizer."
    by_leaf = {k.rsplit(".", 1)[-1]: k for k in valid}
    near = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
    close = [by_leaf[near[0]]] if near else []
  hint = f"; did you mean '{close[0]}'?" if close else ""
  return ConfigError(f"unknown {label or f'config key {key!r}'}{hint}")


def _resolve(root, key: str, full_key: str | None = None) -> tuple[Any, str]:
  """(the dataclass holding `key`, the field name) for a dotted key below `root`."""
  *path, name = key.split(".")
  obj = root
  for part in path:
    obj = getattr(obj, part, None) if dataclasses.is_dataclass(obj) and part in field_names(obj) else None
  if obj is None or not dataclasses.is_dataclass(obj) or name not in field_names(obj):
    raise unknown_key(full_key or key, all_keys(root))
  return obj, name


# ---------------------------------------------------------------- values


def parse_value(key: str, text: str, typ: Any) -> Any:
  """Parses an override string into the field's declared type."""
  origin = typing.get_origin(typ)
  if origin is typing.Literal:
    return text  # validation checks the choice, naming the nearest one
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


def field_type(obj, name: str) -> Any:
  return typing.get_type_hints(type(obj))[name]


def set_value(cfg, key: str, value: Any, *, parse: bool) -> None:
  """Sets the dotted `key` (old flat names accepted) to `value`, parsed from a string when
  `parse`; a section cannot be set as a whole."""
  obj, name = _resolve(cfg, RENAMED.get(key, key), key)
  current = getattr(obj, name)
  if dataclasses.is_dataclass(current):
    raise ConfigError(f"config key '{key}' is a section; set one of its fields, e.g. "
                      f"'{key}.{field_names(current)[0]}'")
  setattr(obj, name, parse_value(key, value, field_type(obj, name)) if parse else value)


def apply_override(cfg: Config, key: str, text: str) -> None:
  """Sets `cfg.<key>` from the string `text`, checking the key and the type; a model preset
  replaces the model section."""
  if key == "model.preset" and text:
    cfg.model = model_preset(text)
    return
  set_value(cfg, key, text, parse=True)


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


def build_config(path: str, overrides: list[str] | None = None) -> Config:
  """Loads a config file, applies `--config.x=v` overrides and validates the result."""
  from t5x_like.config.validation import validate  # validation imports this module

  cfg = load_config_file(path)
  # A preset replaces the model section, so it goes first and other overrides land on top.
  pairs = sorted(parse_overrides(list(overrides or [])), key=lambda kv: kv[0] != "model.preset")
  for key, value in pairs:
    apply_override(cfg, key, value)
  return validate(cfg)


# ---------------------------------------------------------------- JSON


def flatten(values: dict, prefix: str = "") -> dict:
  """Nested dicts -> one dict of dotted keys: {"data": {"seq_len": 8}} -> {"data.seq_len": 8}."""
  out = {}
  for k, v in values.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[prefix + k] = v
  return out


def to_dict(cfg) -> dict:
  """Plain dicts and lists; a mixture entry becomes {"weight": w, <dotted fields>...}."""

  def convert(v):
    if isinstance(v, MixtureEntry):
      return {"weight": v.weight, **v.fields}
    if dataclasses.is_dataclass(v):
      return {f.name: convert(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (list, tuple)):
      return [convert(x) for x in v]
    return v

  return convert(cfg)


def from_dict(d: dict) -> Config:
  """Rebuilds a Config from `to_dict` output (e.g. WORKDIR/config.json); sections left out
  keep their defaults, and old flat data keys are moved to their sections."""
  cfg = Config()

  def fill(obj, values: dict, prefix: str):
    for k, v in values.items():
      key = prefix + k
      if RENAMED.get(key, key) != key:
        set_value(cfg, key, v, parse=False)
        continue
      if k not in field_names(obj):
        raise ConfigError(f"unknown config key '{key}' in saved config")
      if dataclasses.is_dataclass(getattr(obj, k)):
        fill(getattr(obj, k), v, key + ".")
      else:
        setattr(obj, k, v)

  fill(cfg, d, "")
  return cfg


def save_json(cfg: Config, path: str) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(to_dict(cfg), f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def replace(cfg: Config, **sections: dict) -> Config:
  """A copy with fields replaced per section: replace(cfg, train=dict(steps=5)); keys may
  be dotted within the section (data={"tfds.name": "c4"})."""
  out = from_dict(to_dict(cfg))
  for section, values in sections.items():
    for k, v in values.items():
      set_value(out, f"{section}.{k}", v, parse=False)
  return out
