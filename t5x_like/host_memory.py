"""Transparent huge pages for the host heap, turned on by re-executing the command once.

XLA on the CPU allocates every executable's temporaries afresh on each call with the C
library's `posix_memalign`, and glibc serves a request of a few megabytes or more with a
new `mmap`, returned with `munmap` when freed. So each training step touches its whole
temporary space (264 MiB at the decoder_4x256 benchmark shape) in new 4 KiB pages: about
66,000 page faults a step, and every matmul over those buffers walks 4 KiB-page TLB
entries. glibc >= 2.35 can ask the kernel for transparent huge pages (2 MiB) on the memory
it maps (the `glibc.malloc.hugetlb=1` tunable), which the kernel grants when its THP mode
is `madvise` (the default on many distributions; under `always` every process has them
already, under `never` nobody does). Measured in docs/benchmarks.md ("Huge pages for the
host heap"): about 13,000 faults a step instead of 66,000, a 7-10% faster step at the small
CPU benchmark shapes and the README's job, 5% slower at GPT-2 small's shape. Only a run
whose computing is on the CPU gets it (with an accelerator the host heap was not measured).

Tunables are read when a process starts, so the command line (`t5x-like ...`) sets the
variable and replaces its own process with a fresh interpreter running the same command
(`os.execve`: the same process id, nothing printed or opened yet). Processes it starts
inherit the variable. `T5X_LIKE_HUGE_PAGES=0` turns it off; a `GLIBC_TUNABLES` that
already names the tunable is left as it is. Code that imports t5x_like as a library runs
with whatever its own process was started with.
"""

from __future__ import annotations

import os
import platform
import sys

from t5x_like import accelerator_here

TUNABLE = "glibc.malloc.hugetlb"
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def thp_mode() -> str:
  """The kernel's transparent huge page mode ('always', 'madvise', 'never'), or '' if unknown."""
  try:
    with open(_THP_MODE) as f:
      text = f.read()
  except OSError:
    return ""
  start, end = text.find("["), text.find("]")
  return text[start + 1:end] if 0 <= start < end else ""


def cpu_backend(env: dict) -> bool:
  """Whether JAX will compute on the CPU, judged without importing it: JAX_PLATFORMS says
  so, or nothing says an accelerator is here (`t5x_like.accelerator_here`)."""
  platforms = env.get("JAX_PLATFORMS", "")
  if platforms:
    return platforms.split(",")[0].strip().lower() == "cpu"
  return not accelerator_here(env)


def _has_tunable(libc: tuple[str, str]) -> bool:
  """glibc 2.35 or later, which reads `glibc.malloc.hugetlb`."""
  name, version = libc
  try:
    major, minor = (int(p) for p in version.split(".")[:2])
  except ValueError:
    return False
  return name == "glibc" and (major, minor) >= (2, 35)


def tunables_with_huge_pages(env: dict, libc: tuple[str, str], thp: str, cpu: bool = True) -> str | None:
  """The GLIBC_TUNABLES value that turns huge pages on, or None when there is nothing to do:
  turned off, an accelerator doing the computing (not measured there), not glibc or older
  than 2.35, a kernel mode under which the tunable changes nothing, or the tunable already
  set (by us before the re-exec, or by the user)."""
  if env.get("T5X_LIKE_HUGE_PAGES", "1").strip().lower() in ("0", "false", "no", "off") or not cpu:
    return None
  if not _has_tunable(libc) or thp != "madvise":
    return None
  current = env.get("GLIBC_TUNABLES", "")
  if TUNABLE in current:
    return None
  return f"{current}:{TUNABLE}=1" if current else f"{TUNABLE}=1"


def huge_pages_on() -> bool:
  """Whether this process's heap gets transparent huge pages (for benchmark reports)."""
  mode = thp_mode()
  return mode == "always" or (mode == "madvise" and f"{TUNABLE}=1" in os.environ.get("GLIBC_TUNABLES", "").split(":")
                              and _has_tunable(platform.libc_ver()))


def reexec_with_huge_pages() -> None:
  """Re-run this command line in a fresh interpreter with huge pages on, when that changes
  anything; returns (doing nothing) otherwise or if the exec fails."""
  if (sys.platform != "linux" or not sys.executable or not getattr(sys, "orig_argv", None)
      or not os.path.isfile(sys.argv[0])):
    return  # only a command started from a file (the console script, `python -m`), not -c or stdin
  value = tunables_with_huge_pages(os.environ, platform.libc_ver(), thp_mode(), cpu_backend(os.environ))
  if value is None:
    return
  env = dict(os.environ, GLIBC_TUNABLES=value)
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, sys.orig_argv, env)
  except OSError:
    return  # the same command, just without huge pages
