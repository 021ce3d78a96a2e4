"""The fit check (`t5x-like train ... --dry-run=compile [--topology v5p-128]`): lower and
compile the real train step for the configured mesh and print XLA's per-device memory
(arguments, outputs, temporaries), the FLOPs of a step and its collectives, then one line:
fits or not, with the headroom against the chip's memory. Activations and the remat
policy are part of the answer because the compiler planned them.

With `--topology` the step is compiled for a TPU slice that need not be here: jax's
topology descriptions give the slice's devices on any machine and the libtpu wheel's
compiler runs (`pip install -e ".[tpu]"`), as MaxText's train_compile.py does.
"""

from __future__ import annotations

import dataclasses
import os
import re

import jax
import numpy as np

from t5x_like.config import Config
from t5x_like.errors import ConfigError

# Memory per chip in GiB (HBM), from the vendors' published figures; matched by substring
# of the device kind, in order.
HBM_GIB = (("v6", 32.0), ("v5 lite", 16.0), ("v5e", 16.0), ("v5p", 95.0), ("v5", 95.0), ("v4", 32.0),
           ("h200", 141.0), ("h100", 80.0), ("a100", 80.0), ("l4", 24.0), ("a10", 24.0), ("v100", 32.0))
# Chips per topology of N TensorCores: v4 and v5p have two TensorCores per chip (3D tori),
# v5e and v6e one (2D).
_3D = {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8", 256: "4x8x8",
       512: "8x8x8", 1024: "8x8x16", 2048: "8x16x16", 4096: "16x16x16"}
_2D = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}
_COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")


def topology_name(spec: str) -> str:
  """'v5p-128' (cores, as Cloud TPU names slices) or 'v5p:4x4x4' -> jax's 'v5p:4x4x4'."""
  if ":" in spec:
    return spec
  found = re.fullmatch(r"(v4|v5p|v5e|v6e)-(\d+)", spec)
  if not found:
    raise ConfigError(f"--topology {spec!r}: use a slice such as v5p-128, v5e-256, v4-32, v6e-64, or an explicit "
                      "shape such as v5p:4x4x4")
  gen, cores = found.group(1), int(found.group(2))
  shapes, chips = (_3D, cores // 2) if gen in ("v4", "v5p") else (_2D, cores)
  if chips not in shapes:
    raise ConfigError(f"--topology {spec}: {chips} chips has no standard shape; pass it as {gen}:AxBxC")
  return f"{gen}:{shapes[chips]}"


def topology_devices(spec: str) -> list:
  try:
    import libtpu  # noqa: F401 - the compiler, present with the [tpu] extra
  except ImportError:
    raise ConfigError("--topology needs the TPU compiler: pip install -e '.[tpu]' (the libtpu wheel, about "
                      "480 MB), on any machine") from None
  from jax.experimental import topologies

  name = topology_name(spec)
  # libtpu looks for the slice it runs on at start-up; say which one so it does not complain.
  gen, shape = name.split(":")
  chips = int(np.prod([int(x) for x in shape.split("x")]))
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", f"{gen}-{chips * (2 if gen in ('v4', 'v5p') else 1)}")
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  try:
    return list(topologies.get_topology_desc(topology_name=name, platform="tpu").devices)
  except Exception as e:  # an unknown generation or shape
    raise ConfigError(f"--topology {spec}: {str(e).splitlines()[0]}") from None


def hbm_bytes(device_kind: str) -> float | None:
  kind = device_kind.lower()
  return next((gib * 2**30 for name, gib in HBM_GIB if name in kind), None)


@dataclasses.dataclass
class FitReport:
  devices: int
  device_kind: str
  argument_bytes: int
  output_bytes: int
  temp_bytes: int
  code_bytes: int
  alias_bytes: int
  flops_per_step: float
  collectives: dict | None
  hbm: float | None
  compiler_oom: bool = False  # the compiler itself found it too big (temporaries only known)

  @property
  def total_bytes(self) -> int:
    # Donated state is both an argument and an output: count it once.
    return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes + self.code_bytes

  def verdict(self) -> str:
    need = self.total_bytes / 2**30
    if self.hbm is None:
      return f"needs {need:.2f} GiB per device ({self.device_kind}: memory size unknown, so no verdict)"
    room = self.hbm / 2**30
    if need <= room:
      return f"FITS: {need:.2f} GiB of {room:.0f} GiB per device ({100 * (1 - need / room):.0f}% headroom)"
    return f"DOES NOT FIT: {need:.2f} GiB needed, {room:.0f} GiB per device ({need / room:.2f}x)"

  def lines(self) -> list[str]:
    mib = 2**20
    if self.compiler_oom:
      return [f"compiled for {self.devices} x {self.device_kind}: the compiler ran out of memory",
              f"DOES NOT FIT: temporaries alone need {self.temp_bytes / 2**30:.2f} GiB of "
              f"{self.hbm / 2**30:.0f} GiB per device; lower the batch, raise model.remat_policy or shard further"]
    counts = ("n/a (the compiled HLO could not be read back from this libtpu)" if self.collectives is None
              else ", ".join(f"{k} {v}" for k, v in self.collectives.items() if v) or "none")
    return [f"compiled for {self.devices} x {self.device_kind}",
            f"per device: arguments {self.argument_bytes / mib:.1f} MiB, outputs {self.output_bytes / mib:.1f} MiB "
            f"(aliased {self.alias_bytes / mib:.1f}), temporaries {self.temp_bytes / mib:.1f} MiB, code "
            f"{self.code_bytes / mib:.1f} MiB",
            f"FLOPs per step (XLA): {self.flops_per_step:.4g}; collectives: {counts}",
            self.verdict()]


def _abstract_batch(setup, cfg: Config) -> dict:
  from t5x_like import features as F
  from t5x_like.data import spans

  contract = setup.model_class.contract
  d, m = cfg.data, cfg.model
  targets = (spans.span_targets_len(d) if d.objective == "span_corruption" else
             d.task.targets_len or d.seq_len if d.objective == "seq2seq" else d.seq_len)
  lengths = {"inputs": d.seq_len, "targets": targets, "row": 1}
  # Optional features the model reads under this config: class labels (classify, NSP), token types.
  wanted = {F.ENCODER_CLASS_LABELS: m.head == "classify" or m.nsp,
            F.ENCODER_TOKEN_TYPE_IDS: m.type_vocab_size > 0 and d.objective in ("classification", "mlm_nsp")}
  return {f.name: jax.ShapeDtypeStruct((cfg.train.batch_size, lengths[f.length]), np.dtype(f.dtype),
                                       sharding=setup.batch_sharding)
          for f in contract.features if f.required or wanted.get(f.name)}


def compile_report(cfg: Config, devices=None) -> FitReport:
  """Compiles the train step for `cfg`'s mesh over `devices` (default: this machine's)."""
  from t5x_like.train.setup import make_setup

  setup = make_setup(cfg, devices)
  kind = setup.mesh.devices.flat[0].device_kind
  with jax.set_mesh(setup.mesh):
    rng = jax.eval_shape(lambda: jax.random.key(0))  # no execution: the devices may not be here
    lowered = setup.train_step.lower(setup.abstract_state, _abstract_batch(setup, cfg), rng)
    try:
      compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as e:
      # The TPU compiler refuses a program whose memory exceeds the chip's: that is the answer.
      found = re.search(r"required for HLO temporaries \(([\d.]+)G\) exceeds available HBM \(([\d.]+)G\)", str(e))
      if not found:
        raise
      return FitReport(setup.mesh.size, kind, 0, 0, int(float(found.group(1)) * 2**30), 0, 0, 0.0, None,
                       float(found.group(2)) * 2**30, compiler_oom=True)
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else (cost or {})
  try:
    hlo = compiled.as_text() or ""
    collectives = {c: len(re.findall(rf"\b{c}(-start)?\(", hlo)) for c in _COLLECTIVES}
  except Exception:  # noqa: BLE001 - a libtpu newer than jaxlib can emit HLO that jaxlib cannot read back
    collectives = None
  return FitReport(setup.mesh.size, kind, mem.argument_size_in_bytes, mem.output_size_in_bytes,
                   mem.temp_size_in_bytes, mem.generated_code_size_in_bytes, mem.alias_size_in_bytes,
                   float(cost.get("flops", 0.0)), collectives, hbm_bytes(kind))


def fit_check(cfg: Config, topology: str = "") -> FitReport:
  """Prints the compiled step's memory, FLOPs and collectives and the verdict; with a
  topology, for that TPU slice (the mesh's -1 axis takes the slice's devices)."""
  from t5x_like.train.setup import attention_label, make_setup, remat_label
  from t5x_like.train.state import count_params

  devices = topology_devices(topology) if topology else None
  report = compile_report(cfg, devices)
  setup = make_setup(cfg, devices)
  print(f"[t5x_like] fit check of {cfg.name}: {count_params(setup.abstract_params):,} parameters, mesh "
        f"{dict(setup.mesh.shape)}, rules {cfg.mesh.rules}, batch {cfg.train.batch_size} x {cfg.data.seq_len}, "
        f"{cfg.model.dtype}, remat {remat_label(cfg, setup)}, attention {attention_label(cfg, setup)}" + (f", topology {topology_name(topology)}" if topology else ""))
  for line in report.lines():
    print(f"[t5x_like] {line}")
  return report
