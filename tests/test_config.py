import json
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


def test_missing_file_and_missing_get_config(tmp_path):
  with pytest.raises(C.ConfigError, match="config file not found"):
    C.build_config(str(tmp_path / "nope.py"))
  p = tmp_path / "empty.py"
  p.write_text("x = 1\n")
  with pytest.raises(C.ConfigError, match="no get_config"):
    C.build_config(str(p))


def test_json_round_trip(tmp_path):
  cfg = C.build_config(TINY, ["--config.train.steps=11"])
  path = tmp_path / "config.json"
  C.save_json(cfg, str(path))
  back = C.from_dict(json.loads(path.read_text()))
  assert back == cfg
