"""Process start-up, the device mesh and the logical-to-mesh axis rules.

Model code names every parameter and activation axis with a logical name (`batch`,
`length`, `embed`, `mlp`, `heads`, `kv`, `vocab`, `layers`); the rule sets here map those
names to the mesh axes `data`, `fsdp` and `tensor`. Layers never hold a PartitionSpec.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from t5x_like.config import ConfigError, MeshConfig

MESH_AXES = ("data", "fsdp", "tensor")
LOGICAL_AXES = ("batch", "length", "embed", "mlp", "heads", "kv", "vocab", "layers")

# Each rule maps a logical axis to a mesh axis, a tuple of mesh axes, or None. A mesh axis
# is used at most once per array: a later logical axis that asks for one already taken is
# left unsharded, which is how activations (batch over data+fsdp) and FSDP-sharded weights
# (embed over fsdp) share one rule set.
RULE_SETS: dict[str, tuple[tuple[str, object], ...]] = {
    "dp": (("batch", ("data", "fsdp")),),
    "fsdp": (("batch", ("data", "fsdp")), ("embed", "fsdp"), ("vocab", "fsdp")),
    "fsdp_tp": (
        ("batch", ("data", "fsdp")), ("embed", "fsdp"), ("vocab", ("tensor", "fsdp")),
        ("mlp", "tensor"), ("heads", "tensor"),
    ),
    "tp": (("batch", ("data", "fsdp")), ("vocab", "tensor"), ("mlp", "tensor"), ("heads", "tensor")),
}


def rules_from_config(mesh_cfg: MeshConfig) -> tuple[tuple[str, object], ...]:
  if mesh_cfg.rules != "custom":
    return RULE_SETS[mesh_cfg.rules]
  rules = []
  for item in mesh_cfg.custom_rules:
    if not (isinstance(item, (list, tuple)) and len(item) == 2):
      raise ConfigError(f"mesh.custom_rules entry {item!r} must be [logical_name, mesh_axis_or_null]")
    name, target = item
    if name not in LOGICAL_AXES:  # a misspelt name would shard nothing, silently
      raise ConfigError(f"mesh.custom_rules names the logical axis {name!r}, which no array has; the logical "
                        f"axes are {', '.join(LOGICAL_AXES)}")
    targets = target if isinstance(target, (list, tuple)) else (target,)
    for t in targets:
      if t is not None and t not in MESH_AXES:
        raise ConfigError(f"mesh.custom_rules maps {name!r} to unknown mesh axis {t!r}; use one of {MESH_AXES}")
    rules.append((name, tuple(target) if isinstance(target, list) else target))
  return tuple(rules)


# ---------------------------------------------------------------- multi-host start-up


DISTRIBUTED = False  # set once this process has joined a multi-process jax.distributed run


def initialize_distributed(coordinator: str = "", num_processes: int = 0, process_id: int = -1) -> None:
  """Starts jax.distributed when running on several hosts.

  Explicit flags win; otherwise JAX auto-detects TPU pods and SLURM jobs. A single local
  process with no flags and no cluster environment skips initialisation.
  """
  global DISTRIBUTED
  if coordinator or num_processes > 1:
    if not (coordinator and num_processes > 0 and process_id >= 0):
      raise ConfigError("multi-host needs all of --coordinator HOST:PORT, --num-processes N and --process-id I")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    DISTRIBUTED = True
    return
  cluster_env = ("SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")
  if any(k in os.environ for k in cluster_env) and os.environ.get("T5X_LIKE_NO_AUTO_DISTRIBUTED") != "1":
    try:
      jax.distributed.initialize()
      DISTRIBUTED = jax.process_count() > 1
    except (ValueError, RuntimeError) as e:  # e.g. a one-task SLURM allocation
      if "already" not in str(e):
        print(f"[t5x_like] jax.distributed auto-detection skipped: {e}")


# ---------------------------------------------------------------- mesh


def mesh_shape(mesh_cfg: MeshConfig, num_devices: int) -> tuple[int, int, int]:
  """Resolves -1 entries and checks that the mesh covers exactly the devices."""
  sizes = [mesh_cfg.data, mesh_cfg.fsdp, mesh_cfg.tensor]
  for name, s in zip(MESH_AXES, sizes, strict=True):
    if s == 0 or s < -1:
      raise ConfigError(f"mesh.{name}={s} is invalid; use a positive size or -1 for 'the rest'")
  if sizes.count(-1) > 1:
    raise ConfigError("only one of mesh.data, mesh.fsdp, mesh.tensor may be -1")
  fixed = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % fixed:
      raise ConfigError(
          f"mesh axes {dict(zip(MESH_AXES, sizes, strict=True))} need a multiple of {fixed} devices, "
          f"but {num_devices} are available; choose sizes whose product divides {num_devices}")
    sizes[sizes.index(-1)] = num_devices // fixed
  if math.prod(sizes) != num_devices:
    hint = ("--config.mesh.data=-1" if num_devices % (sizes[1] * sizes[2]) == 0 else
            "--config.mesh.data=-1 --config.mesh.fsdp=1 --config.mesh.tensor=1")
    raise ConfigError(
        f"mesh data={sizes[0]} x fsdp={sizes[1]} x tensor={sizes[2]} = {math.prod(sizes)} devices, "
        f"but {num_devices} are available; make the product {num_devices} (e.g. {hint})")
  return tuple(sizes)


def unused_mesh_axes(shape: dict, rules) -> list[str]:
  """Mesh axes of more than one device that no rule shards anything over: every array
  is replicated along them, so those devices repeat each other's work."""
  used = set()
  for _, target in rules:
    used.update(target if isinstance(target, tuple) else (target,))
  return [a for a in MESH_AXES if shape.get(a, 1) > 1 and a not in used]


def hybrid_device_array(devices: Sequence, ici: Sequence[int], dcn: Sequence[int], granule_of) -> np.ndarray:
  """Arranges devices so that, along every mesh axis, the DCN factor is the slow (outer)
  part: devices of one granule (a slice, or a host) fill the inner ICI block."""
  granules: dict = {}
  for d in devices:
    granules.setdefault(granule_of(d), []).append(d)
  keys = sorted(granules)
  if len(keys) != math.prod(dcn) or any(len(granules[k]) != math.prod(ici) for k in keys):
    raise ConfigError(
        f"mesh DCN shape {tuple(dcn)} needs {math.prod(dcn)} slices/hosts of {math.prod(ici)} devices each, "
        f"but found {len(keys)} with {[len(granules[k]) for k in keys]} devices; "
        "set mesh.dcn_* to the number of hosts/slices and the ICI sizes to the devices per host")
  arr = np.empty(tuple(dcn) + tuple(ici), dtype=object)
  for gi, k in enumerate(keys):
    block = np.asarray(sorted(granules[k], key=lambda d: d.id), dtype=object).reshape(tuple(ici))
    arr[np.unravel_index(gi, tuple(dcn))] = block
  # [d0, d1, d2, i0, i1, i2] -> [d0*i0, d1*i1, d2*i2] with the DCN index outermost.
  arr = arr.transpose(0, 3, 1, 4, 2, 5)
  return arr.reshape(tuple(a * b for a, b in zip(dcn, ici, strict=True)))


def make_mesh(mesh_cfg: MeshConfig, devices: Sequence[jax.Device] | None = None) -> Mesh:
  devices = list(jax.devices() if devices is None else devices)
  dcn = (mesh_cfg.dcn_data, mesh_cfg.dcn_fsdp, mesh_cfg.dcn_tensor)
  if min(dcn) < 1:
    raise ConfigError(f"mesh.dcn_* must be >= 1, got {dcn}")
  if math.prod(dcn) > 1:
    ici = mesh_shape(mesh_cfg, len(devices) // math.prod(dcn))
    multi_slice = hasattr(devices[0], "slice_index") and devices[0].slice_index is not None
    granule = (lambda d: d.slice_index) if multi_slice else (lambda d: d.process_index)
    dev_array = hybrid_device_array(devices, ici, dcn, granule)
    return Mesh(dev_array, MESH_AXES, axis_types=(AxisType.Auto,) * 3)
  shape = mesh_shape(mesh_cfg, len(devices))
  if len(devices) == jax.device_count() and devices == list(jax.devices()):
    # mesh_utils orders devices for the physical topology (ICI rings on TPU).
    try:
      from jax.experimental import mesh_utils
      dev_array = mesh_utils.create_device_mesh(shape, devices=devices, allow_split_physical_axes=True)
    except Exception:  # unusual topologies: fall back to the plain order
      dev_array = np.asarray(devices).reshape(shape)
  else:
    dev_array = np.asarray(devices).reshape(shape)
  return Mesh(dev_array, MESH_AXES, axis_types=(AxisType.Auto,) * 3)


# ---------------------------------------------------------------- logical axes


def logical_to_spec(logical_axes: Sequence[str | None], rules, mesh: Mesh | None = None,
                    shape: Sequence[int] | None = None) -> PartitionSpec:
  """Maps logical axis names to a PartitionSpec using the first matching rule.

  With `mesh` and `shape`, a mesh axis that does not divide the dimension is dropped so
  odd sizes (a vocabulary of 1000 on 8 devices) stay replicated instead of failing.
  """
  used: set[str] = set()
  out = []
  for i, name in enumerate(logical_axes):
    target = None
    for rule_name, rule_target in rules:
      if rule_name == name:
        target = rule_target
        break
    axes = () if target is None else (target if isinstance(target, tuple) else (target,))
    kept = []
    for ax in axes:
      if ax in used:
        continue
      if mesh is not None:
        size = mesh.shape[ax]
        if size == 1:
          continue
        if shape is not None and shape[i] % (size * math.prod(mesh.shape[a] for a in kept)):
          continue
      kept.append(ax)
    used.update(kept)
    out.append(None if not kept else (kept[0] if len(kept) == 1 else tuple(kept)))
  return PartitionSpec(*out)


class _ShardingContext(threading.local):
  mesh: Mesh | None = None
  rules: tuple = ()


_CTX = _ShardingContext()


@contextlib.contextmanager
def activation_sharding(mesh: Mesh, rules):
  """While tracing inside this context, `shard()` adds sharding constraints."""
  prev = (_CTX.mesh, _CTX.rules)
  _CTX.mesh, _CTX.rules = mesh, tuple(rules)
  try:
    yield
  finally:
    _CTX.mesh, _CTX.rules = prev


def shard(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
  """Constrains an activation's sharding at a block boundary (a no-op outside a mesh)."""
  if _CTX.mesh is None or _CTX.mesh.size == 1:
    return x
  spec = logical_to_spec(logical_axes, _CTX.rules, _CTX.mesh, x.shape)
  return jax.lax.with_sharding_constraint(x, NamedSharding(_CTX.mesh, spec))


def data_parallel_size(mesh: Mesh, rules) -> int:
  """How many ways the batch axis is split under these rules."""
  spec = logical_to_spec(("batch",), rules, mesh)
  axes = spec[0] if isinstance(spec[0], tuple) else (() if spec[0] is None else (spec[0],))
  return math.prod(mesh.shape[a] for a in axes)
