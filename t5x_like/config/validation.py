"""One validation pass over a Config: types, choices and bounds from the schema, then every
cross-field rule (model shape, data sources and objectives, mixture entries, checkpoint
and mesh settings). Each failure is one ConfigError that names the key and the fix.

`check_parallelism` is the part that needs the devices: it runs once the mesh is known.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import typing

from t5x_like.config import loading
from t5x_like.config.schema import (
  CROSS_DOCUMENT_OBJECTIVES,
  MIXTURE_SHARED,
  OBJECTIVE_FAMILY,
  OBJECTIVE_HEAD,
  SENTINEL_OBJECTIVES,
  TASK_OBJECTIVES,
  Config,
  DataConfig,
  MixtureEntry,
  objectives_for,
)
from t5x_like.errors import ConfigError

_BOUND_TEXT = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_BOUND_OK = {"ge": lambda v, b: v >= b, "gt": lambda v, b: v > b,
             "le": lambda v, b: v <= b, "lt": lambda v, b: v < b}


def _type_ok(v, typ) -> bool:
  if typ is bool:
    return isinstance(v, bool)
  if typ is int:
    return isinstance(v, int) and not isinstance(v, bool)
  if typ is float:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
  if typ is str:
    return isinstance(v, str)
  if typ is list or typing.get_origin(typ) is list:
    return isinstance(v, list)
  if typ is dict:
    return isinstance(v, dict)
  return True


def check_fields(obj, prefix: str = "") -> None:
  """Types, choices and bounds of every field below a dataclass, config files' values
  included (overrides were parsed already); ints given for floats become floats."""
  hints = typing.get_type_hints(type(obj))
  names = {f.name for f in dataclasses.fields(obj)}
  for name in vars(obj):  # `cfg.train.stpes = 5` in a config file adds an attribute silently
    if name not in names and not name.startswith("_"):
      raise loading.unknown_key(prefix + name, [prefix + k for k in sorted(names)] if not prefix else
                                [prefix + k for k in loading.all_keys(obj)])
  for f in dataclasses.fields(obj):
    v, typ, key = getattr(obj, f.name), hints[f.name], prefix + f.name
    if dataclasses.is_dataclass(typ):
      if not isinstance(v, typ):
        raise ConfigError(f"config key '{key}' must be a {typ.__name__}, got {type(v).__name__}")
      check_fields(v, key + ".")
      continue
    if typing.get_origin(typ) is typing.Literal:
      choices = typing.get_args(typ)
      if v not in choices:
        close = difflib.get_close_matches(str(v), choices, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"config key '{key}' is {v!r}; expected one of {', '.join(c if c else repr(c) for c in choices)}{hint}")
      continue
    if not _type_ok(v, typ):
      raise ConfigError(f"config key '{key}' expects {getattr(typ, '__name__', typ)}, got {type(v).__name__} {v!r}")
    if typ is float and isinstance(v, int):
      setattr(obj, f.name, float(v))
    if isinstance(v, float) and not math.isfinite(v):
      raise ConfigError(f"config key '{key}' must be a finite number, got {v}")
    if typing.get_args(typ) == (MixtureEntry,):
      setattr(obj, f.name, [mixture_entry(i, e) for i, e in enumerate(v)])
    for bound, limit in f.metadata.items():
      if not _BOUND_OK[bound](v, limit):
        relation = "must be positive" if (bound, limit) == ("gt", 0) else f"must be {_BOUND_TEXT[bound]} {limit}"
        raise ConfigError(f"config key '{key}' {relation}, got {v}")


# ---------------------------------------------------------------- mixtures


def mixture_entry(i: int, raw) -> MixtureEntry:
  """`data.mixture[i]` as a MixtureEntry: a positive weight and known, non-shared data keys
  (nested sections are flattened to dotted keys; old flat names move to their sections)."""
  if isinstance(raw, MixtureEntry):
    return raw
  key = f"data.mixture[{i}]"
  if not isinstance(raw, dict):
    raise ConfigError(f"{key} must be a dict such as {{\"weight\": 0.5, \"train_files\": \"a/*.txt\"}}, "
                      f"got {raw!r}")
  valid = loading.all_keys(DataConfig())
  fields = {}
  for k, v in loading.flatten({k: v for k, v in raw.items() if k != "weight"}).items():
    name = loading.RENAMED.get(f"data.{k}", f"data.{k}")[len("data."):]
    if name not in valid:
      raise loading.unknown_key(k, valid + ["weight"], label=f"key '{k}' in {key}")
    if name.split(".")[0] in MIXTURE_SHARED:
      raise ConfigError(f"{key} sets '{k}', which all mixture components share; set data.{k} instead")
    fields[name] = v
  w = raw.get("weight")
  if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w < float("inf"):
    raise ConfigError(f"{key} needs a positive number \"weight\", got {w!r}")
  return MixtureEntry(weight=float(w), fields=fields)


def mixture_components(d: DataConfig) -> list[tuple[float, DataConfig]]:
  """(weight, config) of each `data.mixture` entry: its fields over those of `data`."""
  out = []
  for i, raw in enumerate(d.mixture):
    entry = mixture_entry(i, raw)
    component = copy.deepcopy(dataclasses.replace(d, mixture=[]))
    for k, v in entry.fields.items():
      loading.set_value(component, k, v, parse=False)
    check_fields(component, f"data.mixture[{i}].")
    out.append((entry.weight, component))
  return out


# ---------------------------------------------------------------- cross-field rules


def _check_model(cfg: Config) -> None:
  m, d = cfg.model, cfg.data
  if m.head_dim == 0 and m.d_model % m.num_heads:
    raise ConfigError(
        f"model.d_model={m.d_model} is not divisible by model.num_heads={m.num_heads}; "
        "change one of them or set model.head_dim explicitly")
  kv = m.num_kv_heads or m.num_heads
  if m.num_heads % kv:
    raise ConfigError(f"model.num_heads={m.num_heads} must be a multiple of model.num_kv_heads={kv}")
  if m.position == "learned" and d.seq_len > m.max_len:
    raise ConfigError(f"data.seq_len={d.seq_len} exceeds model.max_len={m.max_len} for learned positions")
  if m.position == "rope" and (m.head_dim or m.d_model // m.num_heads) % 2:
    raise ConfigError("RoPE needs an even head dimension; change model.d_model/num_heads or model.head_dim")
  if m.rope_scaling != "none" and m.position != "rope":
    raise ConfigError(f"model.rope_scaling={m.rope_scaling!r} rescales RoPE but model.position={m.position!r}; "
                      "set model.rope_scaling=none or model.position=rope")
  if m.rope_scaling == "llama3" and m.rope_high_freq_factor <= m.rope_low_freq_factor:
    raise ConfigError(f"model.rope_high_freq_factor={m.rope_high_freq_factor} must exceed "
                      f"model.rope_low_freq_factor={m.rope_low_freq_factor} (Llama 3 uses 4 and 1)")
  if m.head != "lm" and m.family != "encoder":
    raise ConfigError(f"model.head={m.head!r} is an encoder head but model.family={m.family!r}; the decoder and "
                      "encoder-decoder families fine-tune through their LM head (data.objective=completion "
                      "or seq2seq), so set model.head=lm")
  if m.head in ("classify", "tag") and m.num_labels < 2:
    raise ConfigError(f"model.head={m.head!r} needs model.num_labels >= 2 (got {m.num_labels}); set it to the "
                      "number of classes, e.g. len(data.task.labels)")
  if m.nsp and (m.family != "encoder" or m.head != "lm"):
    raise ConfigError("model.nsp adds a next-sentence head beside the MLM head: it needs model.family=encoder "
                      "and model.head=lm")
  if m.sliding_window and m.family != "decoder":
    raise ConfigError(f"model.sliding_window applies to the decoder family only (model.family={m.family!r}); "
                      "set model.sliding_window=0")


def _check_source(d: DataConfig, key: str, where: str) -> None:
  """A reader has what it needs: files for file sources, a dataset name for TFDS."""
  if d.source in ("text", "jsonl", "tfrecord") and not d.train_files:
    raise ConfigError(f"{key} (source={d.source!r}) needs train_files (a glob of input files)" if where
                      else f"data.source={d.source!r} needs data.train_files (a glob of input files)")
  if d.source == "tfds" and not d.tfds.name:
    raise ConfigError(f"{key} (source='tfds') needs tfds.name, e.g. \"tfds\": {{\"name\": \"c4/en:3.1.0\"}}"
                      if where else "data.source='tfds' needs data.tfds.name, e.g. "
                      "--config.data.tfds.name=c4/en:3.1.0")


def check_objective(d: DataConfig, family: str | None, key: str = "data") -> None:
  """The objective feeds the family and its options are consistent (rates, sentinels)."""
  from t5x_like.data import spans  # plain Python, no TensorFlow

  if family is not None and OBJECTIVE_FAMILY[d.objective] != family:
    if key != "data":
      raise ConfigError(f"{key} has objective={d.objective!r}, which feeds the "
                        f"{OBJECTIVE_FAMILY[d.objective]} family but model.family={family!r}")
    fits = objectives_for(family)
    raise ConfigError(f"data.objective={d.objective!r} feeds the {OBJECTIVE_FAMILY[d.objective]} family but "
                      f"model.family={family!r}; use data.objective={' or '.join(map(repr, fits))}")
  if d.cross_document and d.objective not in CROSS_DOCUMENT_OBJECTIVES:
    why = ("rows already join documents with EOS and attend across them (T5's layout)"
           if d.objective in ("prefix_lm", "span_corruption") else "rows hold one example or pair each")
    raise ConfigError(f"{key}.cross_document=true applies to objective causal_lm or mlm; {d.objective} {why}, "
                      "so leave it false")
  if d.objective in ("mlm", "mlm_nsp"):
    m = d.mlm
    rates = (m.probability, m.mask_rate, m.random_rate)
    if not (0 < m.probability < 1 and min(rates) >= 0 and m.mask_rate + m.random_rate <= 1):
      raise ConfigError(f"mlm rates need 0 < {key}.mlm.probability < 1 and mask_rate + random_rate <= 1; "
                        f"got {rates}")
  if d.objective == "span_corruption":
    s = d.span_corruption
    if not (0 < s.noise_density < 1 and s.mean_span_length >= 1):
      raise ConfigError(f"span corruption needs 0 < {key}.span_corruption.noise_density < 1 and "
                        f"mean_span_length >= 1; got {s.noise_density}, {s.mean_span_length}")
    needed = spans.max_spans(d)
    if d.tokenizer.extra_ids < needed:
      raise ConfigError(f"span corruption at data.seq_len={d.seq_len} makes up to {needed} noise spans "
                        f"but data.tokenizer.extra_ids={d.tokenizer.extra_ids} sentinels exist; set "
                        f"--config.data.tokenizer.extra_ids={needed} or more (and model.vocab_size to match)")


def _check_data(cfg: Config) -> None:
  d, m = cfg.data, cfg.model
  if not d.mixture:
    _check_source(d, "data", "")
  if d.mixture and d.source == "synthetic":
    raise ConfigError("data.mixture is set but data.source='synthetic'; set data.source to the entries' "
                      "default source (text, jsonl, tfrecord or tfds)")
  for i, (_, c) in enumerate(mixture_components(d)):  # each entry is checked like data itself
    key = f"data.mixture[{i}]"
    if c.source == "synthetic":
      raise ConfigError(f"{key} has source='synthetic', which cannot be mixed; use its files with source='text'")
    _check_source(c, key, "mixture")
    check_objective(c, m.family, key)
  if d.source != "synthetic" and not d.tokenizer.path and not cfg.checkpoint.init_from:
    # (a warm start reads its checkpoint's tokenizer: data/prepare.py)
    raise ConfigError(f"data.source={d.source!r} needs data.tokenizer.path (train one with "
                      "`t5x-like tokenizer train`)")
  check_objective(d, m.family)
  _check_task(cfg)
  if d.objective == "span_corruption":
    _check_span_lengths(d)
  if m.position == "learned" and d.objective == "seq2seq" and (d.task.targets_len or d.seq_len) > m.max_len:
    raise ConfigError(f"seq2seq decoder rows of data.task.targets_len={d.task.targets_len or d.seq_len} tokens "
                      f"pass model.max_len={m.max_len} learned positions; set --config.model.max_len="
                      f"{d.task.targets_len or d.seq_len} or a smaller data.task.targets_len")
  if m.position == "learned" and d.objective == "span_corruption":
    from t5x_like.data import spans

    targets = spans.span_targets_len(d)
    if targets > m.max_len:  # an index past the table would read NaN, not fail
      raise ConfigError(f"span corruption makes decoder rows of {targets} tokens (data.span_corruption."
                        f"targets_len={d.span_corruption.targets_len}, 0 = derived from seq_len and "
                        f"noise_density) but model.max_len={m.max_len} learned positions; set "
                        f"--config.model.max_len={targets} or a smaller data.span_corruption.targets_len")


def _check_span_lengths(d) -> None:
  """Rows that hold at least one whole corrupted example: shorter ones are cut when packed,
  losing noise spans, sentinels and EOS without a word."""
  from t5x_like.data import spans

  if d.seq_len < 3:
    raise ConfigError(f"span corruption needs data.seq_len of at least 3 (a token, a sentinel and EOS); got "
                      f"{d.seq_len}")
  s = d.span_corruption
  if s.targets_len:
    derived = spans.span_targets_len(dataclasses.replace(d, span_corruption=dataclasses.replace(s, targets_len=0)))
    if s.targets_len < derived:
      raise ConfigError(f"data.span_corruption.targets_len={s.targets_len} is shorter than the targets of one "
                        f"example at data.seq_len={d.seq_len} and noise_density={s.noise_density} ({derived} "
                        f"tokens): they would be cut, losing noise spans and EOS; set it to 0 (derived) or at "
                        f"least {derived}")


def _check_task(cfg: Config) -> None:
  """The model's head is the one the objective trains, and the task's labels fit it."""
  d, m = cfg.data, cfg.model
  want = OBJECTIVE_HEAD.get(d.objective, "lm")
  if m.head != want:
    raise ConfigError(f"data.objective={d.objective!r} trains the {want!r} head but model.head={m.head!r}; "
                      f"set --config.model.head={want}")
  if (d.objective == "mlm_nsp") != m.nsp:
    raise ConfigError("data.objective=mlm_nsp and model.nsp=true go together (the NSP head reads the pair "
                      f"labels only that objective makes); got objective={d.objective!r}, nsp={m.nsp}")
  if d.objective == "mlm_nsp" and m.type_vocab_size < 2:
    raise ConfigError("data.objective=mlm_nsp marks sentence A and B with token types: set "
                      f"--config.model.type_vocab_size=2 (got {m.type_vocab_size})")
  if d.objective == "contrastive" and m.dropout_rate <= 0:
    raise ConfigError("data.objective=contrastive makes each positive from the same text under another "
                      "dropout mask (SimCSE), which needs model.dropout_rate > 0 (0.1 is usual); for given "
                      "pairs use data.objective=pairs")
  if d.objective in TASK_OBJECTIVES and d.mixture:
    raise ConfigError(f"data.objective={d.objective!r} reads labelled examples and cannot be mixed; unset "
                      "data.mixture")
  if d.objective in TASK_OBJECTIVES and d.source not in ("jsonl", "synthetic"):
    raise ConfigError(f"data.objective={d.objective!r} reads JSON lines with named fields: set "
                      "data.source=jsonl (or synthetic for the built-in task)")
  labels = d.task.labels
  repeated = sorted({str(x) for x in labels if list(labels).count(x) > 1})
  if repeated:
    raise ConfigError(f"data.task.labels names {', '.join(map(repr, repeated))} more than once; each label needs "
                      "one name (its index is its class)")
  if m.head in ("classify", "tag") and labels and len(labels) != m.num_labels:
    raise ConfigError(f"data.task.labels has {len(labels)} names but model.num_labels={m.num_labels}; "
                      f"set --config.model.num_labels={len(labels)}")
  if d.objective == "tagging" and not labels and d.source != "synthetic":
    raise ConfigError("data.objective=tagging needs data.task.labels, the tag names (e.g. [\"O\", \"B-PER\", "
                      "\"I-PER\"]) in class-id order")


def validate(cfg: Config) -> Config:
  """Checks types, choices, bounds and cross-field constraints; raises ConfigError with the fix."""
  check_fields(cfg)
  _check_model(cfg)
  if cfg.model.param_dtype != "float32":
    raise ConfigError(f"model.param_dtype={cfg.model.param_dtype} is not supported: parameters (the master "
                      "weights the optimizer updates) are kept in float32; set model.dtype=bfloat16 for bfloat16 "
                      "compute")
  t = cfg.train
  if t.batch_size % t.grad_accum_steps:
    raise ConfigError(
        f"train.batch_size={t.batch_size} is not divisible by train.grad_accum_steps={t.grad_accum_steps}")
  _check_data(cfg)
  c = cfg.checkpoint
  if c.restore_from and not c.restore_from.isdigit() and c.init_from:
    raise ConfigError("set only one of checkpoint.restore_from=PATH (params, optimizer state and step) and "
                      "checkpoint.init_from=PATH (params only, a fresh start)")
  if cfg.mesh.custom_rules and cfg.mesh.rules != "custom":
    raise ConfigError(f"mesh.custom_rules is set but mesh.rules={cfg.mesh.rules!r} ignores it; set "
                      "--config.mesh.rules=custom to use it, or unset mesh.custom_rules")
  if cfg.mesh.rules == "custom" and not cfg.mesh.custom_rules:
    raise ConfigError("mesh.rules='custom' needs mesh.custom_rules, e.g. [[\"batch\", \"data\"], [\"embed\", null]]")
  return cfg


def check_parallelism(cfg: Config, mesh_shape: dict, data_parallel: int, process_count: int) -> None:
  """The numbers that must divide evenly on these devices, checked before anything compiles."""
  t = cfg.train
  micro = t.batch_size // t.grad_accum_steps
  if micro % data_parallel:
    fits = [b for b in range(data_parallel, 4 * data_parallel * t.grad_accum_steps + 1, data_parallel)][:3]
    raise ConfigError(
        f"train.batch_size={t.batch_size} / grad_accum_steps={t.grad_accum_steps} = {micro} sequences per "
        f"micro-batch, not divisible by the data-parallel size {data_parallel} (mesh data x fsdp); use a "
        f"batch_size that is a multiple of {data_parallel * t.grad_accum_steps} "
        f"(e.g. {[b * t.grad_accum_steps for b in fits]})")
  if t.batch_size % process_count:
    raise ConfigError(f"train.batch_size={t.batch_size} must be divisible by the {process_count} processes")
  tp = mesh_shape["tensor"]
  if tp > 1 and cfg.mesh.rules in ("tp", "fsdp_tp"):
    m = cfg.model
    for key, value in (("model.num_heads", m.num_heads), ("model.d_ff", m.d_ff)):
      if value % tp:
        raise ConfigError(f"{key}={value} is not divisible by mesh.tensor={tp}; pick a tensor size that "
                          f"divides it (divisors: {[k for k in range(1, value + 1) if value % k == 0 and k <= 64]})")


__all__ = ["SENTINEL_OBJECTIVES", "check_fields", "check_objective", "check_parallelism",
           "mixture_components", "mixture_entry", "validate"]
