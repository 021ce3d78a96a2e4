import jax
import pytest
from jax.sharding import PartitionSpec as P

from t5x_like import config as C
from t5x_like.runtime import RULE_SETS, logical_to_spec, make_mesh, mesh_shape, rules_from_config
from t5x_like.train.setup import make_setup
from t5x_like.train.state import memory_report, per_device_bytes, sharding_table


def test_mesh_shape_resolves_and_rejects():
  assert mesh_shape(C.MeshConfig(data=-1, fsdp=2, tensor=2), 8) == (2, 2, 2)
  with pytest.raises(C.ConfigError, match=r"data=3 x fsdp=1 x tensor=1 = 3 devices, but 8 are available"):
    mesh_shape(C.MeshConfig(data=3, fsdp=1, tensor=1), 8)
  with pytest.raises(C.ConfigError, match=r"need a multiple of 3 devices, but 8"):
    mesh_shape(C.MeshConfig(data=-1, fsdp=3, tensor=1), 8)
  with pytest.raises(C.ConfigError, match="only one of"):
    mesh_shape(C.MeshConfig(data=-1, fsdp=-1, tensor=1), 8)
  # The hint is one that works: a checkpoint's (2, 2, 2) mesh evaluated on 1 device needs all three.
  with pytest.raises(C.ConfigError, match=r"\(e.g. --config.mesh.data=-1\)$"):
    mesh_shape(C.MeshConfig(data=4, fsdp=2, tensor=1), 4)
  with pytest.raises(C.ConfigError, match=r"e.g. --config.mesh.data=-1 --config.mesh.fsdp=1 --config.mesh.tensor=1"):
    mesh_shape(C.MeshConfig(data=2, fsdp=2, tensor=2), 1)


def test_a_mesh_axis_no_rule_uses_is_named():
  from t5x_like.runtime import unused_mesh_axes

  assert unused_mesh_axes({"data": 1, "fsdp": 1, "tensor": 8}, RULE_SETS["fsdp"]) == ["tensor"]
  assert unused_mesh_axes({"data": 1, "fsdp": 1, "tensor": 8}, RULE_SETS["fsdp_tp"]) == []
  assert unused_mesh_axes({"data": 2, "fsdp": 4, "tensor": 1}, RULE_SETS["dp"]) == []  # batch over both
  assert unused_mesh_axes({"data": 2, "fsdp": 2, "tensor": 2}, (("batch", "data"),)) == ["fsdp", "tensor"]


def test_rules_use_each_mesh_axis_once_and_drop_non_divisors():
  mesh = make_mesh(C.MeshConfig(data=2, fsdp=2, tensor=2))
  rules = RULE_SETS["fsdp_tp"]
  assert logical_to_spec(("batch", "length", "embed"), rules, mesh) == P(("data", "fsdp"), None, None)
  assert logical_to_spec(("embed", "mlp"), rules, mesh, (64, 128)) == P("fsdp", "tensor")
  assert logical_to_spec(("vocab", "embed"), rules, mesh, (1000, 64)) == P(("tensor", "fsdp"), None)
  assert logical_to_spec(("vocab", "embed"), rules, mesh, (1001, 64)) == P(None, "fsdp")  # 1001 is odd


def test_custom_rules_validated():
  cfg = C.MeshConfig(rules="custom", custom_rules=[["batch", "data"], ["embed", "model"]])
  with pytest.raises(C.ConfigError, match="unknown mesh axis 'model'"):
    rules_from_config(cfg)


def _cfg(**mesh):
  cfg = C.load_config_file("configs/tiny/gpt.py")
  return C.replace(cfg, mesh=mesh)


def test_validation_names_the_clashing_numbers():
  cfg = C.replace(_cfg(data=8, fsdp=1, tensor=1), train=dict(batch_size=12))
  with pytest.raises(C.ConfigError, match=r"12 sequences per micro-batch, not divisible by the data-parallel size 8"):
    make_setup(cfg)
  cfg = C.replace(_cfg(data=1, fsdp=1, tensor=8, rules="tp"), model=dict(num_heads=4))
  with pytest.raises(C.ConfigError, match=r"model.num_heads=4 is not divisible by mesh.tensor=8"):
    make_setup(cfg)


def test_fsdp_memory_is_an_eighth_of_replicated():
  def total(cfg):
    setup = make_setup(cfg)
    return per_device_bytes(setup.abstract_state["params"]) + per_device_bytes(setup.abstract_state["opt_state"]), setup
  replicated, _ = total(_cfg(data=8, fsdp=1, tensor=1, rules="dp"))
  sharded, setup = total(_cfg(data=1, fsdp=8, tensor=1, rules="fsdp"))
  assert sharded <= replicated / 8 * 1.05
  table = sharding_table(setup)
  assert "stack/blocks/mlp/wi" in table and "'fsdp'" in table
  assert "per-device memory" in memory_report(setup)
  assert jax.device_count() == 8


def test_hybrid_mesh_puts_hosts_on_the_outer_data_axis():
  from t5x_like.runtime import hybrid_device_array
  devs = jax.devices()
  host_of = lambda d: d.id // 4  # pretend: 2 hosts of 4 devices
  arr = hybrid_device_array(devs, (1, 4, 1), (2, 1, 1), host_of)
  assert arr.shape == (2, 4, 1)
  assert [host_of(d) for d in arr[0, :, 0]] == [0] * 4 and [host_of(d) for d in arr[1, :, 0]] == [1] * 4
  arr = hybrid_device_array(devs, (2, 2, 1), (2, 1, 1), host_of)  # data = 2 hosts x 2
  assert arr.shape == (4, 2, 1)
  assert [host_of(d) for d in arr[:, 0, 0]] == [0, 0, 1, 1]
  with pytest.raises(C.ConfigError, match=r"needs 4 slices/hosts of 2 devices"):
    hybrid_device_array(devs, (2, 1, 1), (4, 1, 1), host_of)
  # In one process all devices are one host: a DCN shape of 2 is refused with the numbers.
  with pytest.raises(C.ConfigError, match=r"found 1 with \[8\] devices"):
    make_mesh(C.MeshConfig(data=1, fsdp=4, tensor=1, dcn_data=2))
