"""The fit check: the real train step compiled for the configured mesh (8 simulated CPU
devices here) or for a TPU slice through libtpu on this CPU machine, with XLA's memory, the
step's FLOPs and a verdict that flips when the batch outgrows the chip."""

import math

import jax
import numpy as np
import pytest

from t5x_like import cli
from t5x_like import config as C
from t5x_like.train import fit


def _tiny(**train):
  cfg = C.load_config_file("configs/tiny/gpt.py")
  return C.validate(C.replace(cfg, mesh=dict(data=1, fsdp=8), model=dict(dtype="bfloat16"), train=train))


def test_remat_lowers_the_temporaries_on_8_devices(capsys):
  none = fit.compile_report(C.replace(_tiny(), model=dict(remat_policy="none")))
  full = fit.compile_report(C.replace(_tiny(), model=dict(remat_policy="full")))
  assert none.devices == 8 and none.flops_per_step > 0
  assert full.temp_bytes < none.temp_bytes
  assert none.argument_bytes == full.argument_bytes  # same state, same sharding
  assert cli.main(["train", "--config", "configs/tiny/gpt.py", "--workdir", "unused", "--dry-run=compile",
                   "--config.mesh.fsdp=8", "--config.mesh.data=1"]) == 0
  out = capsys.readouterr().out
  assert "compiled for 8 x cpu" in out and "temporaries" in out and "memory size unknown" in out


def test_auto_remat_is_dots_on_cpu_and_none_on_accelerators():
  """The default compiles the CPU step as `dots` (the same temporaries, below `none`'s)."""
  from t5x_like.layers.transformer import remat_for
  from t5x_like.train.setup import make_setup

  assert _tiny().model.remat_policy == "auto"
  assert [remat_for("auto", p) for p in ("cpu", "gpu", "tpu")] == ["dots", "none", "none"]
  assert remat_for("full", "cpu") == "full" and remat_for("none", "cpu") == "none"
  assert make_setup(_tiny()).remat_policy == "dots"
  auto, dots, none = (fit.compile_report(C.replace(_tiny(), model=dict(remat_policy=p))).temp_bytes
                      for p in ("auto", "dots", "none"))
  assert auto == dots < none


def test_topology_names():
  assert fit.topology_name("v5p-128") == "v5p:4x4x4" and fit.topology_name("v5e-256") == "v5e:16x16"
  assert fit.topology_name("v4-32") == "v4:2x2x4" and fit.topology_name("v5p:2x2x2") == "v5p:2x2x2"
  with pytest.raises(C.ConfigError, match="v5p-100: 50 chips has no standard shape"):
    fit.topology_name("v5p-100")
  with pytest.raises(C.ConfigError, match="use a slice such as v5p-128"):
    fit.topology_name("h100-8")


needs_libtpu = pytest.mark.skipif(not __import__("importlib").util.find_spec("libtpu"),
                                  reason="the [tpu] extra (libtpu) is not installed")


@needs_libtpu
def test_tiny_gpt_compiles_for_a_v5p_slice_and_the_verdict_flips(capsys):
  """Compiled by the TPU compiler on this CPU machine: fits at batch 64; at 65,536 rows of 1,024
  tokens the compiler itself runs out of the chip's 95 GiB, and the verdict says so."""
  small = fit.fit_check(_tiny(batch_size=64), "v5p:2x2x2")
  assert small.devices == 8 and small.device_kind.startswith("TPU v5") and small.verdict().startswith("FITS")
  big_cfg = C.replace(_tiny(batch_size=65_536), data=dict(seq_len=1024), model=dict(max_len=1024))
  big = fit.fit_check(big_cfg, "v5p-16")
  assert big.verdict().startswith("DOES NOT FIT") and big.temp_bytes > big.hbm
  out = capsys.readouterr().out
  assert "FITS:" in out and "DOES NOT FIT" in out and "topology v5p:2x2x2" in out
  assert "remat auto (none), attention auto (xla)" in out  # `auto` resolves for the TPU, not this host


@needs_libtpu
@pytest.mark.slow  # two compiles of a 1.2B-parameter step for 64 chips: about 8 minutes on 2 cores
def test_llama_1b_on_v5p_64_chips_shards_its_state_and_flips_past_the_hbm():
  # head_dim 128 (16 query, 4 key-value heads: the same parameters as the preset's 32 x 64):
  # the TPU lays a 64-wide minor dimension out in 128 lanes, which adds 13.6% to the preset's
  # argument memory (measured 251.2 MiB against 221.0 = 1/64 of the state), not sharding.
  cfg = C.load_config_file("configs/runs/llama_1b_c4.py")
  cfg = C.validate(C.replace(cfg, mesh=dict(data=1, fsdp=64), train=dict(batch_size=64),
                             model=dict(num_heads=16, num_kv_heads=4, head_dim=128)))
  report = fit.fit_check(cfg, "v5p:4x4x4")
  from t5x_like.train.setup import make_setup
  setup = make_setup(cfg, fit.topology_devices("v5p:4x4x4"))
  state = sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(setup.abstract_state))
  assert report.devices == 64
  assert report.argument_bytes == pytest.approx(state / 64, rel=0.05)
  assert report.verdict().startswith("FITS")
  huge = fit.fit_check(C.replace(cfg, train=dict(batch_size=8192)), "v5p:4x4x4")
  assert huge.verdict().startswith("DOES NOT FIT")
