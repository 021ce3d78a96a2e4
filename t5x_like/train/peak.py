"""The MFU denominator: a device's peak FLOP/s for the run's compute dtype, either looked up
(vendors' published dense figures) or, on CPU where there is none, measured once per machine
with a matmul probe and cached. Every MFU figure says which peak it used."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time

import jax
import jax.numpy as jnp

# Dense (no sparsity) TFLOP/s per chip: (bf16, fp32). fp32 on NVIDIA Ampere and later is the
# TF32 tensor-core rate, which XLA uses for fp32 matmuls by default; TPUs publish no fp32
# rate (their matrix units run fp32 as several bf16 passes), so their bf16 peak serves.
# Sources: NVIDIA A100, H100, H200, L4, A10 and V100 datasheets; Google Cloud TPU system
# architecture pages (v4, v5e, v5p, v6e). Matched by substring of jax's device_kind, in order.
_PUBLISHED = (
    ("h100 pcie", (756.0, 378.0, "NVIDIA H100 PCIe datasheet")),
    ("h100", (989.4, 494.7, "NVIDIA H100 SXM datasheet")),
    ("h200", (989.4, 494.7, "NVIDIA H200 datasheet")),
    ("a100", (312.0, 156.0, "NVIDIA A100 datasheet")),
    ("l4", (121.0, 60.0, "NVIDIA L4 datasheet")),
    ("a10", (125.0, 62.5, "NVIDIA A10 datasheet")),
    ("v100", (125.0, 15.7, "NVIDIA V100 datasheet (fp16 tensor cores for 16-bit)")),
    ("tpu v6", (918.0, 918.0, "Google Cloud TPU v6e")),
    ("tpu v5 lite", (197.0, 197.0, "Google Cloud TPU v5e")),
    ("tpu v5e", (197.0, 197.0, "Google Cloud TPU v5e")),
    ("tpu v5", (459.0, 459.0, "Google Cloud TPU v5p")),
    ("tpu v4", (275.0, 275.0, "Google Cloud TPU v4")),
)
PROBE_N = 2048


@dataclasses.dataclass(frozen=True)
class Peak:
  flops_per_device: float
  source: str

  def describe(self) -> str:
    return f"{self.flops_per_device / 1e12:.3g} TFLOP/s per device ({self.source})"


def published(device_kind: str, dtype: str) -> Peak | None:
  kind = device_kind.lower()
  for name, (bf16, fp32, source) in _PUBLISHED:
    if name in kind:
      sixteen = dtype in ("bfloat16", "float16")
      return Peak((bf16 if sixteen else fp32) * 1e12, f"{source}, dense {'bf16' if sixteen else 'fp32/tf32'}")
  return None


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def measure_matmul_flops(dtype: str, n: int = PROBE_N, repeats: int = 5) -> float:
  """FLOP/s of the best of `repeats` n x n matmuls in `dtype` on the first local device."""
  dt = jnp.dtype(dtype)
  a = jax.device_put(jnp.ones((n, n), dt), jax.local_devices()[0])
  matmul = jax.jit(lambda x, y: x @ y)
  matmul(a, a).block_until_ready()  # compile and warm up
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    matmul(a, a).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2.0 * n ** 3 / best


def _cache_path() -> str:
  root = os.environ.get("T5X_LIKE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "t5x_like")
  return os.path.join(root, "peak.json")


_PROBED: dict[str, dict] = {}  # this process's entry per cache key: one probe per process


def measured_cpu(dtype: str) -> Peak:
  """This host's matmul FLOP/s. Each process probes once, and the cache (per machine, dtype
  and jax version) keeps the best rate any probe has seen: a busy machine only makes a
  probe slower, so one taken under load cannot stick and inflate every later MFU. The
  simulated devices of one host share it."""
  key = hashlib.sha1(f"{_cpu_name()}|{os.cpu_count()}|{dtype}|jax {jax.__version__}".encode()).hexdigest()[:16]
  if key not in _PROBED:
    path = _cache_path()
    try:
      with open(path) as f:
        cache = json.load(f)
    except (OSError, ValueError):
      cache = {}
    old = cache.get(key) or {}
    rate = measure_matmul_flops(dtype)
    entry = {"flops": max(rate, old.get("flops", 0.0)), "probes": old.get("probes", 0) + 1,
             "cpu": _cpu_name(), "dtype": dtype,
             "when": time.strftime("%Y-%m-%d") if rate >= old.get("flops", 0.0) else old.get("when", "")}
    cache[key] = entry
    try:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path + f".tmp{os.getpid()}", "w") as f:
        json.dump(cache, f, indent=1)
      os.replace(path + f".tmp{os.getpid()}", path)
    except OSError:
      pass  # an unwritable home: this process's probe still serves
    _PROBED[key] = entry
  entry = _PROBED[key]
  return Peak(entry["flops"] / jax.local_device_count(),
              f"measured: {PROBE_N}x{PROBE_N} {dtype} matmul, the best of {entry['probes']} start-up probe(s) "
              f"on this host ({entry['cpu']}, {os.cpu_count()} threads, {entry['when']}), shared by "
              f"{jax.local_device_count()} device(s)")


def device_peak(dtype: str, override_tflops: float = 0.0) -> Peak:
  """The peak to divide by: the config's value, a published figure, or on CPU a measured one.
  An accelerator with no published figure is measured the same way."""
  if override_tflops > 0:
    return Peak(override_tflops * 1e12, "train.peak_tflops_per_device")
  dev = jax.devices()[0]
  found = published(dev.device_kind, dtype)
  if found is not None:
    return found
  peak = measured_cpu(dtype)
  if dev.platform != "cpu":
    peak = dataclasses.replace(peak, source=peak.source.replace("this host", f"this {dev.device_kind}"))
  return peak
