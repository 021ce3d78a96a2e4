"""Every published-recipe run config (configs/runs/) validates and passes --dry-run on
simulated devices without opening its dataset (which is never present here), and a model
preset behind it matches the published shape."""

import glob
import os

import pytest

from t5x_like import config as C
from t5x_like.config.loading import import_file
from t5x_like.train.loop import run

RUN_CONFIGS = sorted(glob.glob("configs/runs/*.py"))


def test_there_is_a_run_config_per_family():
  families = {C.load_config_file(p).model.family for p in RUN_CONFIGS}
  assert families == {"decoder", "encoder", "encoder_decoder"} and len(RUN_CONFIGS) >= 4


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=os.path.basename)
def test_run_config_dry_runs_on_simulated_devices(path, tmp_path, capsys):
  cfg = C.validate(C.load_config_file(path))
  assert cfg.model.preset and "YOUR_BUCKET" in (cfg.data.tokenizer.path or "")
  # 8 simulated devices here; the docstring names the meshes for real slices.
  cfg = C.replace(cfg, mesh=dict(data=-1, fsdp=8 if cfg.mesh.rules != "dp" else 1))
  out = run(cfg, str(tmp_path / "dry"), dry_run=True)
  text = capsys.readouterr().out
  assert out["params"] > 100e6 and "per-device memory" in text and "mesh {" in text
  assert not os.path.exists(tmp_path / "dry")  # a dry run writes nothing
  doc = import_file(path, path).__doc__
  for topology in ("v5p-64", "v5e-256", "8 x H100"):
    assert topology in doc, (path, topology)
