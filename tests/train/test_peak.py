"""The MFU denominator: published figures by device kind and dtype, a measured (and cached)
matmul rate on CPU, the config's override; and a run's summary says which one it used."""

import json

import numpy as np
import pytest

from t5x_like.train import peak


def test_published_peaks_by_device_kind_and_dtype():
  h100 = peak.published("NVIDIA H100 80GB HBM3", "bfloat16")
  assert h100.flops_per_device == pytest.approx(989.4e12) and "H100 SXM" in h100.source
  assert peak.published("NVIDIA H100 80GB HBM3", "float32").flops_per_device == pytest.approx(494.7e12)
  assert peak.published("NVIDIA H100 PCIe", "bfloat16").flops_per_device == pytest.approx(756e12)
  assert peak.published("TPU v5 lite", "bfloat16").flops_per_device == pytest.approx(197e12)
  assert peak.published("TPU v5p", "bfloat16").flops_per_device == pytest.approx(459e12)
  assert peak.published("cpu", "float32") is None


def test_cpu_peak_is_probed_once_per_process_and_the_cache_keeps_the_best(tmp_path, monkeypatch):
  monkeypatch.setenv("T5X_LIKE_CACHE_DIR", str(tmp_path))
  monkeypatch.setattr(peak, "_PROBED", {})
  calls = []
  real = peak.measure_matmul_flops
  monkeypatch.setattr(peak, "measure_matmul_flops", lambda dtype: calls.append(dtype) or real(dtype, n=512))
  first = peak.device_peak("float32")
  second = peak.device_peak("float32")
  assert calls == ["float32"] and first == second  # one probe per process
  assert "measured" in first.source and "matmul" in first.source and "1 start-up probe" in first.source
  import jax
  host = first.flops_per_device * jax.local_device_count()
  assert 1e9 < host < 1e13  # between a slow core and far more than this machine has
  cached = json.load(open(tmp_path / "peak.json"))
  assert [e["dtype"] for e in cached.values()] == ["float32"]

  # A later process on a busy machine probes slower: the cache keeps the better rate.
  monkeypatch.setattr(peak, "_PROBED", {})
  monkeypatch.setattr(peak, "measure_matmul_flops", lambda dtype: host / 3)
  busy = peak.device_peak("float32")
  assert busy.flops_per_device == pytest.approx(first.flops_per_device) and "2 start-up probe" in busy.source
  # A faster probe raises it.
  monkeypatch.setattr(peak, "_PROBED", {})
  monkeypatch.setattr(peak, "measure_matmul_flops", lambda dtype: host * 2)
  assert peak.device_peak("float32").flops_per_device == pytest.approx(2 * first.flops_per_device)
  assert peak.device_peak("float32", override_tflops=2.5).flops_per_device == 2.5e12


def test_the_probe_counts_matmul_flops():
  """2 n^3 FLOPs over the best time: a 256 matmul at the probe's rate takes a positive time."""
  rate = peak.measure_matmul_flops("float32", n=256, repeats=3)
  assert np.isfinite(rate) and rate > 0
