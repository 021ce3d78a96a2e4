import json
import re
import textwrap

import pytest

from t5x_like import config as C

TINY = "configs/tiny/gpt.py"


def test_override_parses_types():
  cfg = C.build_config(TINY, ["--config.optimizer.learning_rate=1e-3", "--config.train.steps", "7",
                              "--config.model.tie_embeddings=false", "--config.mesh.custom_rules=[[\"batch\", \"data\"]]",
                              "--config.mesh.rules=custom"])
  assert cfg.optimizer.learning_rate == pytest.approx(1e-3)
  assert cfg.train.steps == 7 and isinstance(cfg.train.steps, int)
  assert cfg.model.tie_embeddings is False
  assert cfg.mesh.custom_rules == [["batch", "data"]]


def test_unknown_key_names_nearest():
  with pytest.raises(C.ConfigError, match=r"unknown config key 'optimizer.learning_rat'.*'optimizer.learning_rate'"):
    C.build_config(TINY, ["--config.optimizer.learning_rat=1e-3"])
  with pytest.raises(C.ConfigError, match=r"did you mean 'train.batch_size'"):
    C.build_config(TINY, ["--config.train.batchsize=4"])


def test_wrong_type_names_field_and_type():
  with pytest.raises(C.ConfigError, match=r"'train.steps' expects an int, got 'many'"):
    C.build_config(TINY, ["--config.train.steps=many"])
  with pytest.raises(C.ConfigError, match=r"'model.scan_layers' expects a bool"):
    C.build_config(TINY, ["--config.model.scan_layers=maybe"])


def test_bad_choice_and_cross_field_errors():
  with pytest.raises(C.ConfigError, match=r"model.norm.*expected one of rmsnorm, layernorm.*did you mean 'rmsnorm'"):
    C.build_config(TINY, ["--config.model.norm=rmsnrom"])
  with pytest.raises(C.ConfigError, match=r"not divisible by model.num_heads"):
    C.build_config(TINY, ["--config.model.num_heads=3"])
  with pytest.raises(C.ConfigError, match=r"batch_size=30 is not divisible by train.grad_accum_steps=4"):
    C.build_config(TINY, ["--config.train.batch_size=30", "--config.train.grad_accum_steps=4"])


def test_type_errors_in_config_file(tmp_path):
  p = tmp_path / "bad.py"
  p.write_text(textwrap.dedent("""
      from t5x_like.config import Config
      def get_config():
        c = Config()
        c.train.steps = "ten"
        return c
  """))
  with pytest.raises(C.ConfigError, match=r"'train.steps' expects int, got str"):
    C.build_config(str(p))


def test_a_misspelled_key_set_in_a_config_file_is_refused(tmp_path):
  """The sections are plain dataclasses: `c.train.stpes = 5` in a file adds an attribute
  that nothing reads, so validation names it, as it does for the same override."""
  for line, message in (("c.train.stpes = 5", "unknown config key 'train.stpes'; did you mean 'train.steps'?"),
                        ("c.trian = 5", "unknown config key 'trian'; did you mean 'train'?"),
                        ("c.data.tokenizer.pth = 'x'", "unknown config key 'data.tokenizer.pth'; did you mean "
                                                       "'data.tokenizer.path'?")):
    p = tmp_path / "typo.py"
    p.write_text(f"from t5x_like.config import Config\ndef get_config():\n  c = Config()\n  {line}\n  return c\n")
    with pytest.raises(C.ConfigError, match=re.escape(message)):
      C.build_config(str(p))


def test_missing_file_and_missing_get_config(tmp_path):
  with pytest.raises(C.ConfigError, match="config file not found"):
    C.build_config(str(tmp_path / "nope.py"))
  p = tmp_path / "empty.py"
  p.write_text("x = 1\n")
  with pytest.raises(C.ConfigError, match="no get_config"):
    C.build_config(str(p))
  y = tmp_path / "cfg.yaml"
  y.write_text("train:\n  steps: 5\n")
  with pytest.raises(C.ConfigError, match=r"cfg.yaml' is not a Python file: configs are .py files with a get_config"):
    C.build_config(str(y))


def test_json_round_trip(tmp_path):
  cfg = C.build_config(TINY, ["--config.train.steps=11"])
  path = tmp_path / "config.json"
  C.save_json(cfg, str(path))
  back = C.from_dict(json.loads(path.read_text()))
  assert back == cfg


def test_values_outside_their_range_are_refused():
  cases = {
      "optimizer.learning_rate=-1e-3": "'optimizer.learning_rate' must be positive, got -0.001",
      "optimizer.learning_rate=0": "'optimizer.learning_rate' must be positive, got 0.0",
      "optimizer.warmup_steps=-5": "'optimizer.warmup_steps' must be >= 0, got -5",
      "model.dropout_rate=1.5": "'model.dropout_rate' must be < 1, got 1.5",
      "optimizer.clip_norm=-1": "'optimizer.clip_norm' must be >= 0, got -1.0",
      "optimizer.b2=2": "'optimizer.b2' must be < 1, got 2.0",
      "data.shuffle_buffer=-1": "'data.shuffle_buffer' must be >= 0, got -1",
      "train.eval_every=-1": "'train.eval_every' must be >= 0, got -1",
      "train.eval_batches=-2": "'train.eval_batches' must be >= 0, got -2",
      "optimizer.weight_decay=-0.1": "'optimizer.weight_decay' must be >= 0, got -0.1",
      "optimizer.learning_rate=inf": "'optimizer.learning_rate' must be a finite number, got inf",
      "optimizer.clip_norm=inf": "'optimizer.clip_norm' must be a finite number, got inf",
  }
  for override, message in cases.items():
    with pytest.raises(C.ConfigError, match=re.escape(message)):
      C.build_config(TINY, [f"--config.{override}"])
  # Values at the edges of their ranges are fine.
  C.build_config(TINY, ["--config.optimizer.warmup_steps=0", "--config.model.dropout_rate=0",
                        "--config.optimizer.clip_norm=0", "--config.train.eval_every=0"])


def test_llama_family_fields_are_checked():
  cases = {
      ("model.position=learned", "model.rope_scaling=llama3"): "model.rope_scaling='llama3' rescales RoPE",
      ("model.rope_scaling=llama3", "model.rope_high_freq_factor=1"): "must exceed model.rope_low_freq_factor",
      ("model.rope_scaling=yarn",): "expected one of none, llama3",
      ("model.sliding_window=-1",): "'model.sliding_window' must be >= 0",
      ("model.family=encoder", "model.sliding_window=8"): "model.sliding_window applies to the decoder family only",
      ("model.rope_scaling_factor=0",): "'model.rope_scaling_factor' must be positive",
  }
  for overrides, message in cases.items():
    with pytest.raises(C.ConfigError, match=re.escape(message)):
      C.build_config(TINY, [f"--config.{o}" for o in overrides])
  cfg = C.build_config(TINY, ["--config.model.rope_scaling=llama3", "--config.model.sliding_window=16",
                              "--config.model.qkv_bias=true"])
  assert (cfg.model.rope_scaling, cfg.model.sliding_window, cfg.model.qkv_bias) == ("llama3", 16, True)


def test_a_config_file_whose_get_config_raises_is_one_config_error(tmp_path):
  p = tmp_path / "raises.py"
  p.write_text("def get_config():\n  raise KeyError('no such preset')\n")
  with pytest.raises(C.ConfigError, match=r"raises\.py: get_config\(\) failed: KeyError: 'no such preset'"):
    C.build_config(str(p))
  p.write_text("from t5x_like.config import DataConfig\ndef get_config():\n  return DataConfig(no_field=1)\n")
  with pytest.raises(C.ConfigError, match=r"get_config\(\) failed: TypeError: .*no_field"):
    C.build_config(str(p))


def test_a_model_preset_from_the_command_line_then_overrides_on_top():
  cfg = C.build_config(TINY, ["--config.model.dropout_rate=0", "--config.model.preset=gpt:gpt2_small",
                              "--config.model.max_len=512", "--config.data.seq_len=128"])
  m = cfg.model
  assert (m.preset, m.num_layers, m.d_model, m.vocab_size, m.position) == ("gpt:gpt2_small", 12, 768, 50_257, "learned")
  assert m.dropout_rate == 0.0 and m.max_len == 512  # given before the preset, applied after it
  assert C.model_preset("llama:llama_1b", max_len=2048).num_kv_heads == 8
  with pytest.raises(C.ConfigError, match=r"no preset module 'gtp'; available: \[.*'gpt'"):
    C.build_config(TINY, ["--config.model.preset=gtp:gpt2_small"])
  with pytest.raises(C.ConfigError, match=r"has no preset 'gpt2_tiny'; it has \['gpt2_large'"):
    C.build_config(TINY, ["--config.model.preset=gpt:gpt2_tiny"])


def test_lengths_that_would_cut_examples_silently_are_refused():
  """Rows too short for what the objective makes would be cut by packing, losing noise
  spans, sentinels and EOS, and a decoder row past a learned position table reads NaN: each
  is a ConfigError naming the field and the length that fits."""
  from t5x_like.data import spans

  t5 = "configs/tiny/t5.py"
  derived = spans.span_targets_len(C.build_config(t5, []).data)
  with pytest.raises(C.ConfigError, match=rf"targets_len={derived - 1} is shorter than the targets of one example"
                                          rf".*at least {derived}"):
    C.build_config(t5, [f"--config.data.span_corruption.targets_len={derived - 1}"])
  assert C.build_config(t5, [f"--config.data.span_corruption.targets_len={derived}"])
  with pytest.raises(C.ConfigError, match="span corruption needs data.seq_len of at least 3"):
    C.build_config(t5, ["--config.data.seq_len=2"])
  seq2seq = ["--config.data.objective=seq2seq", "--config.data.source=jsonl", "--config.data.tokenizer.path=t.model",
             "--config.data.train_files=t.jsonl", "--config.model.position=learned", "--config.model.max_len=64",
             "--config.data.seq_len=64"]
  with pytest.raises(C.ConfigError, match=r"targets_len=96 tokens pass model.max_len=64 learned positions"):
    C.build_config(t5, [*seq2seq, "--config.data.task.targets_len=96"])
  assert C.build_config(t5, [*seq2seq, "--config.data.task.targets_len=64"])


def test_settings_that_would_do_nothing_or_crash_later_are_refused():
  from t5x_like import runtime
  from t5x_like.layers.attention import attention_for

  with pytest.raises(C.ConfigError, match="model.param_dtype=bfloat16 is not supported"):
    C.build_config(TINY, ["--config.model.param_dtype=bfloat16"])
  with pytest.raises(C.ConfigError, match="attention_impl=cudnn needs an NVIDIA GPU .*platform here is cpu"):
    attention_for("cudnn", "cpu")
  assert attention_for("cudnn", "gpu") == "cudnn" and attention_for("auto", "cpu") == "chunked"
  mesh = C.MeshConfig(rules="custom", custom_rules=[["batch", ["data", "fsdp"]], ["mpl", "tensor"]])
  with pytest.raises(C.ConfigError, match="names the logical axis 'mpl', which no array has"):
    runtime.rules_from_config(mesh)
  mesh = C.MeshConfig(rules="custom", custom_rules=[["batch", ["data", "fsdp"]], ["mlp", "tensor"]])
  assert runtime.rules_from_config(mesh) == (("batch", ("data", "fsdp")), ("mlp", "tensor"))


def test_custom_rules_without_the_custom_rule_set_are_refused():
  with pytest.raises(C.ConfigError, match=r"mesh.custom_rules is set but mesh.rules='fsdp' ignores it; set "
                                          r"--config.mesh.rules=custom"):
    C.build_config(TINY, ["--config.mesh.rules=fsdp", "--config.mesh.custom_rules=[[\"embedd\", \"data\"]]"])
