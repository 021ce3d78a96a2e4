"""`t5x-like bench`: the training step of a preset or config alone, on random full-length
batches (the family's `fake_batch`), so the figures are the model's and the sharding's and
no input pipeline's (scripts/bench_data.py measures that).

It reports compile time, the step time (median, min, max), tokens/s, MFU with the peak it
divides by and where that figure comes from (`train/peak.py`), the device's peak memory
(none on CPU, which keeps no such count), XLA's planned temporaries and the parameters.
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np

from t5x_like import config as C
from t5x_like import host_memory
from t5x_like.data import spans
from t5x_like.errors import ConfigError, UserError
from t5x_like.models import family_class
from t5x_like.train.peak import device_peak
from t5x_like.train.setup import attention_label, init_state, make_setup, remat_label
from t5x_like.train.state import count_params

WARMUP_STEPS = 2


def bench_config(args, overrides: list[str]) -> tuple[C.Config, int]:
  """The config to time, from `--preset` or `--config` with `--config.a.b=v` overrides and the
  bench's own flags on top, and the decoder row length (0 where targets share the input row)."""
  if args.preset:
    cfg = C.Config(model=C.model_preset(args.preset))
    cfg.data.objective = C.objectives_for(cfg.model.family)[0]
  else:
    cfg = C.load_config_file(args.config)
  # A preset replaces the model section, so it goes first and other overrides land on top.
  for key, value in sorted(C.parse_overrides(overrides), key=lambda kv: kv[0] != "model.preset"):
    C.apply_override(cfg, key, value)
  flags = {"dtype": args.dtype, "attention_impl": args.attention, "remat_policy": args.remat,
           "loss_chunk": args.loss_chunk}
  for name, value in flags.items():
    if value is not None:
      C.apply_override(cfg, f"model.{name}", str(value))
  cfg.train.batch_size = args.batch or cfg.train.batch_size
  cfg.data.seq_len = args.seq or cfg.data.seq_len
  if args.targets:
    cfg.data.span_corruption.targets_len = args.targets
  if args.mesh:
    sizes = args.mesh.split(",")
    if len(sizes) != 3 or not all(s.strip().lstrip("-").isdigit() for s in sizes):
      raise ConfigError(f"--mesh {args.mesh!r} must be DATA,FSDP,TENSOR sizes, e.g. -1,1,1 or 2,4,1")
    cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = (int(s) for s in sizes)
  if args.rules:
    cfg.mesh.rules = args.rules
  cfg.train.steps = args.steps + WARMUP_STEPS
  contract = family_class(cfg.model.family).contract
  separate = contract.target_side is not contract.first_side
  targets = spans.span_targets_len(cfg.data) if separate else 0
  # Learned positions must cover the rows; the bench may ask for longer rows than the preset.
  cfg.model.max_len = max(cfg.model.max_len, cfg.data.seq_len, targets)
  return C.validate(cfg), targets


def _time_steps(setup, state, batches, steps: int, trace: int = 0,
                trace_top: int = 20) -> tuple[float, list[float], dict, object, str]:
  key = jax.random.key(0)
  with jax.set_mesh(setup.mesh):
    t0 = time.perf_counter()
    compiled = setup.train_step.lower(state, batches[0], key).compile()
    compile_s = time.perf_counter() - t0
    for i in range(WARMUP_STEPS):
      state, metrics = compiled(state, batches[i % 2], key)
    jax.block_until_ready(metrics)
    times = []
    for i in range(steps):
      t0 = time.perf_counter()
      state, metrics = compiled(state, batches[i % 2], key)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - t0)
    profile = ""
    if trace:
      from t5x_like.train import opprofile

      holder = {"state": state}

      def one_step(batch):
        holder["state"], m = compiled(holder["state"], batch, key)
        return m

      hlo = compiled.as_text()
      wall, ops = opprofile.trace_ops(one_step, (batches[0],), trace, hlo)
      profile = opprofile.format_ops(f"train step, {trace} traced", wall, ops, hlo, top=trace_top)
  return compile_s, times, metrics, compiled.memory_analysis(), profile


def run_bench(cfg: C.Config, targets: int, *, name: str, peak_tflops: float = 0.0, trace: int = 0,
              trace_top: int = 20) -> dict:
  """Compiles and times `cfg.train.steps` steps (the first two untimed) and returns the
  figures as one flat dict (the JSON line); `trace` > 0 also traces that many more steps
  with `jax.profiler` and puts the per-op table under "profile" (printed, not in the JSON)."""
  model, batch, seq = cfg.model, cfg.train.batch_size, cfg.data.seq_len
  steps = cfg.train.steps - WARMUP_STEPS
  setup = make_setup(cfg)
  contract = setup.model_class.contract
  batches = [jax.device_put(contract.fake_batch(batch, seq, targets, vocab_size=model.vocab_size, seed=i),
                            setup.batch_sharding) for i in range(2)]
  state = init_state(setup, cfg, 0)
  compile_s, times, metrics, plan, profile = _time_steps(setup, state, batches, steps, trace, trace_top)
  step_s = float(np.median(times))
  weights = np.asarray(batches[0][contract.target_side.loss_weights])  # fake MLM rows score 15%
  flops = setup.model_class.flops_per_sequence(model, seq, targets, scored=float(np.mean(weights > 0))) * batch
  peak = device_peak(model.dtype, peak_tflops)
  dev = jax.devices()[0]
  mem = dev.memory_stats() or {}
  peak_bytes = mem.get("peak_bytes_in_use")
  return {
      "name": name, "family": model.family, "params": count_params(setup.abstract_params),
      "dtype": model.dtype, "dropout": model.dropout_rate, "attention": attention_label(cfg, setup),
      "remat": remat_label(cfg, setup),
      "loss_chunk": model.loss_chunk, "batch": batch, "seq": seq, "targets": targets,
      "mesh": dict(setup.mesh.shape), "device": f"{jax.device_count()} x {dev.device_kind}",
      "platform": dev.platform, "jax": jax.__version__, "host_heap": host_memory.host_heap(),
      "steps": steps,
      "compile_s": round(compile_s, 2), "step_ms": round(1e3 * step_s, 2),
      "step_ms_min": round(1e3 * min(times), 2), "step_ms_max": round(1e3 * max(times), 2),
      "tokens_per_s": round(batch * (seq + targets) / step_s, 1),
      "tflops": round(flops / step_s / 1e12, 4), "mfu": round(flops / step_s / (peak.flops_per_device * jax.device_count()), 4),
      "mfu_peak": peak.describe(),
      "peak_memory_gib": None if peak_bytes is None else round(peak_bytes / 2**30, 2),
      "memory_limit_gib": round(mem["bytes_limit"] / 2**30, 1) if "bytes_limit" in mem else None,
      # XLA's memory plan; "donated": outputs written into the donated input state's buffers.
      "temp_mib": round(plan.temp_size_in_bytes / 2**20, 1), "output_mib": round(plan.output_size_in_bytes / 2**20, 1),
      "donated_mib": round(plan.alias_size_in_bytes / 2**20, 1), "loss": float(metrics["loss"]),
      **({"profile": profile} if profile else {}),
  }


def format_table(row: dict) -> str:
  """The figures as a two-column table for people; the JSON line follows it for scripts."""
  rows = f"{row['batch']} x {row['seq']}" + (f" + {row['targets']} targets" if row["targets"] else "")
  memory = "n/a (the CPU keeps no peak count)" if row["peak_memory_gib"] is None else (
      f"{row['peak_memory_gib']:.2f} GiB peak of {row['memory_limit_gib']} GiB")
  lines = [
      ("model", f"{row['name']} ({row['family']}), {row['params']:,} params"),
      ("shape", f"{rows} rows, {row['dtype']}, dropout {row['dropout']:g}, attention {row['attention']}, "
                f"remat {row['remat']}, loss_chunk {row['loss_chunk']}"),
      ("devices", f"{row['device']} ({row['platform']}), mesh {row['mesh']}, jax {row['jax']}"),
      ("host heap", f"{row['host_heap']} (docs/benchmarks.md, \"The host heap\")"),
      ("compile", f"{row['compile_s']:.1f} s"),
      ("step", f"{row['step_ms']:.1f} ms median of {row['steps']} "
               f"(min {row['step_ms_min']:.1f}, max {row['step_ms_max']:.1f})"),
      ("tokens/s", f"{row['tokens_per_s']:,.0f}"),
      ("MFU", f"{100 * row['mfu']:.1f}% ({row['tflops']:.3g} TFLOP/s) of {row['mfu_peak']}"),
      ("memory", memory),
      ("temporaries", f"{row['temp_mib']:,.0f} MiB (XLA's plan for the compiled step)"),
      ("donation", f"{row['donated_mib']:,.0f} of {row['output_mib']:,.0f} MiB of outputs (new params and optimizer "
                   "state) written into the donated inputs' buffers"),
      ("loss", f"{row['loss']:.4f}"),
  ]
  if "torch_step_ms" in row:
    lines.append(("PyTorch", f"{row['torch_model']} (torch {row['torch']}, {row['torch_threads']} threads, "
                             f"{row['torch_params']:,} params): {row['torch_step_ms']:.1f} ms median "
                             f"(min {row['torch_step_ms_min']:.1f}, max {row['torch_step_ms_max']:.1f}), "
                             f"{row['torch_tokens_per_s']:,.0f} tokens/s"))
    lines.append(("speed-up", f"{row['speedup_vs_torch']:.2f}x (PyTorch step time / ours)"
                              + ("" if row["torch_params"] == row["params"] else
                                 f"; NOTE: parameter counts differ ({row['params']:,} ours), the shapes are not the same")))
  width = max(len(k) for k, _ in lines)
  return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)


def _torch_side(cfg: C.Config, row: dict) -> dict:
  """The same family and shape in PyTorch (train/bench_torch.py), after ours, in a child
  process; float32 and one process only, as the comparison is for the CPU or one device."""
  from t5x_like.train import bench_torch

  shape = bench_torch.shape_of(cfg.model, row["batch"], row["seq"], row["targets"], row["steps"])
  try:
    out = bench_torch.compare(shape)
  except RuntimeError as e:
    raise UserError(str(e)) from None
  return {**out, "speedup_vs_torch": round(out["torch_step_ms"] / row["step_ms"], 3)}


def bench(args, overrides: list[str]) -> dict:
  """`t5x-like bench`: builds the config, runs, prints the table and the JSON line."""
  cfg, targets = bench_config(args, overrides)
  if args.compare_torch and (cfg.model.dtype != "float32" or jax.process_count() > 1):
    raise ConfigError("--compare-torch times float32 on one process: drop --dtype or run it on one host")
  if args.compare_torch:
    # The PyTorch side trains with dropout off (HF models cannot all match our placement of
    # it), so ours does too: GPT-2 and BERT presets carry 0.1, which costs a random mask per
    # residual branch and would time different work on the two sides.
    cfg.model.dropout_rate = 0.0
  row = run_bench(cfg, targets, name=args.name or args.preset or args.config, peak_tflops=args.peak_tflops,
                  trace=args.trace, trace_top=args.trace_top)
  profile = row.pop("profile", "")
  if args.compare_torch:
    row.update(_torch_side(cfg, row))
  print(format_table(row))
  if profile:
    print(profile)
  line = json.dumps(row)
  print(line, flush=True)
  if args.json:
    with open(args.json, "a") as f:
      f.write(line + "\n")
  return row
