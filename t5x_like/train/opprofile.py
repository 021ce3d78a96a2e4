"""Where a compiled program spends its time, op by op: a `jax.profiler` trace of a few calls,
read back from its XSpace protobuf and matched to the optimised HLO's op names.

Used by `t5x-like bench --trace N` (the whole train step) and `scripts/profile_layer.py
--trace` (one layer). An op inside a `while` body (the layer scan, a micro-batch loop) runs
once per iteration; its time here is the sum over the iterations, and the table marks it
with the loop's trip count (`x4`), so a matmul inside a 4-layer scan that shows 14.6 ms
takes 3.7 ms a layer. With several devices in one process each op's time is summed over
the devices that ran it.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
import time

import jax

__all__ = ["format_ops", "loop_trips", "trace_ops"]

_OP = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = ", re.M)
# Loops and conditionals: they span their bodies' ops, which are timed themselves, so they
# are left out of the table.
_CONTROL = re.compile(r"(while|conditional|call)(\.\d+)?$")


def trace_ops(fn, args, repeats: int, hlo_text: str) -> tuple[float, dict[str, float]]:
  """Wall ms per call of `fn(*args)` under the profiler and {op name: ms per call} for the
  ops of `hlo_text` (the compiled program's `as_text()`). `fn` is called once untraced.

  An op's time is its share of the wall time (`_shares`): XLA CPU runs independent ops at
  once on one thread pool, and many of them asynchronously (dots it hands to Eigen rather
  than YNNPACK, such as the weight gradients x^T g, copies, partitioned loop fusions):
  such an op records only its launch, about 0.1 ms, and an "end: NAME" event on a pool
  thread when its work is done. So each call of an op runs from its launch to the first
  end before its next launch (`_intervals`), and each moment of the trace is split evenly
  among the ops running then; the ops' times add up to the busy part of the wall time."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # ships with TensorFlow (a dependency)

  with tempfile.TemporaryDirectory() as tmp:
    jax.block_until_ready(fn(*args))
    jax.profiler.start_trace(tmp)
    t0 = time.perf_counter()
    for _ in range(repeats):
      jax.block_until_ready(fn(*args))
    wall = (time.perf_counter() - t0) * 1e3 / repeats
    jax.profiler.stop_trace()
    space = xplane_pb2.XSpace()
    with open(glob.glob(os.path.join(tmp, "**", "*.xplane.pb"), recursive=True)[0], "rb") as f:
      space.ParseFromString(f.read())
  names = set(_OP.findall(hlo_text))
  spans: dict[str, list[tuple[int, int]]] = {}
  ends: dict[str, list[int]] = {}
  for plane in space.planes:
    meta = {i: m.name for i, m in plane.event_metadata.items()}
    for line in plane.lines:
      for ev in line.events:
        name = meta.get(ev.metadata_id, "")
        start = line.timestamp_ns * 1000 + ev.offset_ps
        if name in names:
          spans.setdefault(name, []).append((start, start + ev.duration_ps))
        elif name.startswith("end: ") and name[5:] in names:
          ends.setdefault(name[5:], []).append(start + ev.duration_ps)
  timed = {n: _intervals(sorted(s), sorted(ends.get(n, []))) for n, s in spans.items() if not _CONTROL.match(n)}
  return wall, {n: ps / 1e9 / repeats for n, ps in _shares(timed).items()}


def _intervals(spans: list[tuple[int, int]], ends: list[int]) -> list[tuple[int, int]]:
  """One op's calls as (start, stop): each event, extended to the first "end:" event
  after it and before the op's next event."""
  out, j = [], 0
  for i, (start, stop) in enumerate(spans):
    bound = spans[i + 1][0] if i + 1 < len(spans) else None
    while j < len(ends) and ends[j] < start:
      j += 1
    if j < len(ends) and (bound is None or ends[j] <= bound):
      stop = max(stop, ends[j])
      j += 1
    out.append((start, stop))
  return out


def _shares(intervals: dict[str, list[tuple[int, int]]]) -> dict[str, float]:
  """{op: picoseconds}: every stretch of time split evenly among the ops running in it."""
  edges = sorted((t, kind, name) for name, calls in intervals.items()
                 for a, b in calls if b > a for t, kind in ((a, 1), (b, -1)))
  out = {name: 0.0 for name in intervals}
  running: dict[str, int] = {}
  last = None
  for t, kind, name in edges:
    if running and last is not None and t > last:
      share = (t - last) / len(running)
      for op in running:
        out[op] += share
    running[name] = running.get(name, 0) + kind
    if not running[name]:
      del running[name]
    last = t
  return out


def _computations(hlo_text: str) -> dict[str, str]:
  """{computation name: its body text} of an HLO module's text."""
  parts = re.split(r"\n(?=(?:ENTRY )?%[\w.\-]+ \()", hlo_text)
  out = {}
  for part in parts:
    m = re.match(r"(?:ENTRY )?%([\w.\-]+) \(", part)
    if m:
      out[m.group(1)] = part
  return out


def loop_trips(hlo_text: str, comps: dict[str, str] | None = None) -> dict[str, int]:
  """{op name: how many times one call runs it} for the ops inside `while` bodies with a
  known trip count (nested loops multiply); ops outside loops are absent."""
  comps = _computations(hlo_text) if comps is None else comps
  trips: dict[str, int] = {}

  def visit(comp: str, factor: int) -> None:
    for m in re.finditer(r"%[\w.\-]+ = [^\n]* while\([^\n]*?body=%([\w.\-]+)[^\n]*", comps.get(comp, "")):
      n = re.search(r'"known_trip_count":\{"n":"(\d+)"', m.group(0))
      body, inner = m.group(1), factor * (int(n.group(1)) if n else 1)
      for op in _OP.findall(comps.get(body, "")):
        trips[op] = inner
      visit(body, inner)

  entry = next((name for name, text in comps.items() if text.startswith("ENTRY")), None)
  if entry is not None:
    visit(entry, 1)
  return trips


def format_ops(label: str, wall: float, ops: dict[str, float], hlo_text: str, top: int = 8) -> str:
  """The time per kind of op (`ynn_fusion`, `copy_bitcast_fusion`, ...) and the `top`
  slowest ops with their shapes (output <- operands; contracting dims for dots) and loop
  trip counts, as text."""
  kinds: dict[str, float] = {}
  for name, ms in ops.items():
    kind = re.sub(r"\.\d+$", "", name)
    kinds[kind] = kinds.get(kind, 0.0) + ms
  comps = _computations(hlo_text)
  trips = loop_trips(hlo_text, comps)
  lines = [f"{label}: {wall:.1f} ms per call traced, {sum(ops.values()):.1f} ms of it in XLA ops "
           "(ops running at once split the time evenly)"]
  for kind, ms in sorted(kinds.items(), key=lambda kv: -kv[1])[:8]:
    lines.append(f"  {ms:8.2f} ms  {kind}")
  lines.append("  slowest ops (summed over loop iterations, xN; output <- operands; dims contracted):")
  for name, ms in sorted(ops.items(), key=lambda kv: -kv[1])[:top]:
    line = re.search(rf"%{re.escape(name)} = (\S+) \w+\(([^)]*)\)(.*)", hlo_text)
    called = re.search(r"calls=%([\w.\-]+)", line.group(3)) if line else None
    body = comps.get(called.group(1), "") if called else ""
    operands = re.findall(r"= (\w+\[[\d,]*\])\S* parameter", body)
    dims = re.search(r"lhs_contracting_dims=\{([\d,]*)\}, rhs_contracting_dims=\{([\d,]*)\}",
                     body or (line.group(3) if line else ""))
    shape = line.group(1).split("{")[0] if line else "?"
    extra = f"  lhs {dims.group(1)} rhs {dims.group(2)}" if dims else ""
    loop = f"x{trips[name]}" if name in trips else ""
    lines.append(f"  {ms:8.2f} ms {loop:>4} {name:<26} {shape} <- {', '.join(operands)}{extra}")
  return "\n".join(lines)
