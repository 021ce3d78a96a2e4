"""`t5x-like bench` (train/bench.py): a tiny config runs, prints the table and one JSON line
of positive figures; a mistake in its arguments is one line."""

import json
import os

import pytest

from t5x_like.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "tiny", "gpt.py")
SMALL = ["--config.model.num_layers=1", "--config.model.d_model=32", "--config.model.d_ff=64"]


def test_bench_prints_a_table_and_a_json_line(capsys, tmp_path, monkeypatch):
  monkeypatch.setenv("T5X_LIKE_CACHE_DIR", str(tmp_path))  # the CPU peak is measured here
  out_file = tmp_path / "bench.jsonl"
  rc = main(["bench", "--config", TINY, "--batch", "8", "--seq", "32", "--steps", "2",
             "--loss-chunk", "8", "--json", str(out_file), *SMALL])
  assert rc == 0
  lines = capsys.readouterr().out.strip().splitlines()
  row = json.loads(lines[-1])
  assert row["tokens_per_s"] > 0 and row["step_ms"] > 0 and row["params"] > 0
  assert row["step_ms_min"] <= row["step_ms"] <= row["step_ms_max"]
  assert (row["seq"], row["batch"], row["loss_chunk"], row["steps"]) == (32, 8, 8, 2)
  assert "measured: 2048x2048 float32 matmul" in row["mfu_peak"] and 0 < row["mfu"]
  assert row["peak_memory_gib"] is None  # the CPU keeps no peak count
  # The donated state: every output but the scalar metrics reuses an input buffer.
  assert 0 < row["donated_mib"] <= row["output_mib"] and row["output_mib"] - row["donated_mib"] < 0.01
  assert any(line.startswith("memory") and "n/a" in line for line in lines)
  # In-process (no re-exec): the heap this process was started with, as /proc/self/maps shows it.
  maps = open("/proc/self/maps").read()
  assert row["host_heap"].startswith("mimalloc" if "libmimalloc" in maps else "glibc")
  assert any(line.startswith("host heap") for line in lines)
  assert any(line.startswith("MFU") and row["mfu_peak"] in line for line in lines)
  assert json.loads(out_file.read_text()) == row


def test_bench_trace_prints_the_time_per_op_with_the_layer_loop_marked(capsys, tmp_path, monkeypatch):
  """--trace N: the per-op table of a profiled step, where ops of the 3-layer scan carry x3
  and the head's matmul (outside the scan) does not; the JSON line stays figures only."""
  monkeypatch.setenv("T5X_LIKE_CACHE_DIR", str(tmp_path))
  rc = main(["bench", "--config", TINY, "--batch", "8", "--seq", "32", "--steps", "1", "--trace", "2",
             "--trace-top", "7", "--config.model.num_layers=3", "--config.model.d_model=32",
             "--config.model.d_ff=64"])
  assert rc == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert "profile" not in json.loads(lines[-1])
  start = next(i for i, line in enumerate(lines) if line.startswith("train step, 2 traced:"))
  ops = [line.split() for line in lines[start:] if " ms " in line and "<-" in line]
  assert len(ops) == 7 and all(float(op[0]) >= 0 for op in ops)  # --trace-top
  marked = [op for op in ops if op[2] == "x3"]
  assert marked, lines[start:]
  assert all(op[2] not in ("x1", "x2") for op in ops)


def test_loop_trips_reads_the_scan_trip_count():
  import jax
  import jax.numpy as jnp

  from t5x_like.train.opprofile import loop_trips

  def f(x):
    y, _ = jax.lax.scan(lambda c, _: (jnp.sin(c) @ c, None), x, None, length=5)
    return jnp.tanh(y)

  text = jax.jit(f).lower(jnp.ones((8, 8))).compile().as_text()
  trips = loop_trips(text)
  assert trips and set(trips.values()) == {5}
  entry_ops = [n for n in trips if "tanh" in n]
  assert not entry_ops  # the tanh after the loop is outside it


def test_trace_counts_the_asynchronous_dot_to_its_end():
  """A dot XLA CPU hands to Eigen (the lhs contracted on its first axis, as in a weight
  gradient x^T g) records only its launch in the trace and an "end:" event when done; its
  time in the table must be the work's, not the launch's 0.1 ms."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from t5x_like.train.opprofile import _intervals, _shares, trace_ops

  x = jnp.asarray(np.random.default_rng(0).normal(size=(2048, 1024)), jnp.float32)
  g = jnp.asarray(np.random.default_rng(1).normal(size=(2048, 512)), jnp.float32)
  compiled = jax.jit(lambda x, g: x.T @ g).lower(x, g).compile()
  text = compiled.as_text()
  assert "__ynn_fusion" not in text.split("ENTRY")[1]  # the Eigen path this test is about
  wall, ops = trace_ops(compiled, (x, g), 3, text)
  # Counting the launches only gave 10% of the wall (2.1 of 21.6 ms); the dot's work is most
  # of it, less on a loaded machine, where the call waits for a core (45% seen in the suite).
  assert len(ops) == 1 and 0.25 * wall < sum(ops.values()) <= 1.05 * wall, (wall, ops)
  # Pairing: each launch ends at the first "end:" before the next launch; none: its own span.
  assert _intervals([(0, 1), (10, 11), (20, 21)], [5, 15]) == [(0, 5), (10, 15), (20, 21)]
  # Time two ops share is split between them, so the times add up to the busy wall time.
  assert _shares({"a": [(0, 10)], "b": [(5, 15)], "c": [(20, 30), (25, 27)]}) == {"a": 7.5, "b": 7.5, "c": 10}


@pytest.mark.slow  # 20 s; the tiny decoder bench test stays fast
def test_bench_encoder_decoder_preset_counts_both_rows(capsys, tmp_path, monkeypatch):
  monkeypatch.setenv("T5X_LIKE_CACHE_DIR", str(tmp_path))
  rc = main(["bench", "--preset", "t5:t5_v1_1_small", "--batch", "8", "--seq", "32", "--targets", "8",
             "--steps", "1", "--config.model.num_layers=1", "--config.model.num_heads=2",
             "--config.model.num_decoder_layers=1", "--config.model.d_model=32", "--config.model.d_ff=64",
             "--config.model.head_dim=16"])
  assert rc == 0
  row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert (row["family"], row["targets"]) == ("encoder_decoder", 8)


def test_compare_torch_times_the_same_shape_in_pytorch(capsys, tmp_path, monkeypatch):
  """GPT-2 with the same widths has exactly our parameter count in Hugging Face's PyTorch
  model (so the two sides time the same shapes); the ratio is the two medians'."""
  monkeypatch.setenv("T5X_LIKE_CACHE_DIR", str(tmp_path))
  rc = main(["bench", "--preset", "gpt:gpt2_small", "--batch", "8", "--seq", "16", "--steps", "2", "--compare-torch",
             "--config.model.num_layers=1", "--config.model.d_model=32", "--config.model.num_heads=2",
             "--config.model.d_ff=64", "--config.model.vocab_size=128", "--config.model.max_len=16"])
  assert rc == 0
  lines = capsys.readouterr().out.strip().splitlines()
  row = json.loads(lines[-1])
  assert row["torch_model"] == "GPT-2" and row["torch_params"] == row["params"]
  # The preset's dropout 0.1 is off on our side too, as it is on PyTorch's: the same work.
  assert row["dropout"] == 0.0 and any("dropout 0," in line for line in lines)
  assert row["torch_step_ms"] > 0 and row["speedup_vs_torch"] == pytest.approx(row["torch_step_ms"] / row["step_ms"], rel=1e-2)
  assert any(line.startswith("speed-up") for line in lines)


def test_bench_errors_are_one_line(capsys):
  cases = {
      ("--preset", "gpt:nope"): "has no preset 'nope'",
      ("--preset", "gpt"): "must be MODULE:NAME",
      ("--config", TINY, "--batch", "8", "--mesh", "3,1,1"): "but 8 are available",
      ("--config", TINY, "--mesh", "2x4"): "must be DATA,FSDP,TENSOR",
      ("--config", TINY, "--dtype", "fp8"): "model.dtype",
      ("--config", TINY, "--dtype", "bfloat16", "--compare-torch"): "--compare-torch times float32",
  }
  for args, message in cases.items():
    assert main(["bench", *args, "--steps", "1"]) == 2, args
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, (args, err)
