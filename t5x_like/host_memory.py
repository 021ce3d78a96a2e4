"""The host heap of a run computing on the CPU, chosen by re-executing the command once.

XLA on the CPU allocates every executable's temporaries afresh on each call
(`posix_memalign`), and glibc serves a request of a few megabytes or more with a new `mmap`,
returned with `munmap` when freed (from XLA's worker threads, whose arenas cannot hold more
than 64 MiB, so no glibc tunable keeps them). So each training step touches its whole
temporary space (264 MiB at the decoder_4x256 benchmark shape) in fresh pages that the
kernel must fault in and zero: about 66,000 page faults a step. Two remedies, measured in
docs/benchmarks.md ("The host heap"):

- `mimalloc`: Microsoft's allocator, shipped as a shared library by the `cmeel-mimalloc`
  dependency and put in front of the C library's with `LD_PRELOAD`. It keeps freed memory
  mapped for `MIMALLOC_PURGE_DELAY` ms (set to 1 s here), so a step reuses the pages of the
  step before (no faults a step measurable), and the tf.data pipeline's many threads get
  thread-local heaps. With the kernel's THP mode `madvise` it also asks for 2 MiB pages
  (`MIMALLOC_ALLOW_LARGE_OS_PAGES`). The default where the library is installed.
- `huge_pages`: glibc >= 2.35 asks the kernel for transparent huge pages on the memory it
  maps (the `glibc.malloc.hugetlb=1` tunable; the kernel grants them in THP mode
  `madvise`): about 700 faults a step, but each fresh 2 MiB page is still zeroed by the
  kernel. The default without mimalloc.

Both are read when a process starts, so the command line (`t5x-like ...`) sets the variables
and replaces its own process with a fresh interpreter running the same command (`os.execve`:
the same process id, nothing printed or opened yet). There `LD_PRELOAD` and `GLIBC_TUNABLES`
get their old values back at once, so the programs it starts (sbatch, gcloud, a shell) run
as they would have; a `t5x-like` child decides for itself, and a Python child that should
share the heap (the PyTorch side of `bench --compare-torch`) is given `child_env()`. Only a
run whose computing is on the CPU gets either (with an accelerator the host heap was not
measured). `T5X_LIKE_HOST_HEAP` chooses: `auto` (the default), `mimalloc`, `huge_pages` or
`system` (the C library's heap as it is). An `LD_PRELOAD` that already names an allocator
(mimalloc, jemalloc, tcmalloc) or a `GLIBC_TUNABLES` that names the tunable is left as it is.
Code that imports t5x_like as a library runs with whatever its own process was started with.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys

from t5x_like import accelerator_here
from t5x_like.errors import ConfigError

TUNABLE = "glibc.malloc.hugetlb"
CHOICES = ("auto", "mimalloc", "huge_pages", "system")
# Freed memory stays mapped this long (ms): longer than the gap between one step's end and the
# next step's start, short enough that an idle process gives it back.
PURGE_DELAY_MS = "1000"
_ALLOCATORS = ("mimalloc", "jemalloc", "tcmalloc")
# Set for the re-executed process: the variables we added and the values they replaced.
_MARK = "T5X_LIKE_HOST_HEAP_EXEC"
_RESTORED = ("LD_PRELOAD", "GLIBC_TUNABLES")  # MIMALLOC_* stay: they act only where mimalloc is loaded
_applied: dict[str, str] = {}  # what this process was re-executed with
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


def mimalloc_library() -> str | None:
  """The path of the installed `cmeel-mimalloc` package's shared library, or None."""
  try:
    dist = importlib.metadata.distribution("cmeel-mimalloc")
  except importlib.metadata.PackageNotFoundError:
    return None
  names = sorted((f for f in dist.files or () if f.name.startswith("libmimalloc.so")), key=lambda f: len(f.name))
  for f in names:
    path = os.path.abspath(str(dist.locate_file(f)))
    # LD_PRELOAD splits on spaces and colons: such a path cannot be preloaded.
    if os.path.isfile(path) and not any(c in path for c in " :\t"):
      return path
  return None


def _has_tunable(libc: tuple[str, str]) -> bool:
  """glibc 2.35 or later, which reads `glibc.malloc.hugetlb`."""
  name, version = libc
  try:
    major, minor = (int(p) for p in version.split(".")[:2])
  except ValueError:
    return False
  return name == "glibc" and (major, minor) >= (2, 35)


def choice(env: dict) -> str:
  value = env.get("T5X_LIKE_HOST_HEAP", "auto").strip().lower() or "auto"
  if value not in CHOICES:
    raise ConfigError(f"T5X_LIKE_HOST_HEAP={value!r} is not a host heap; use one of {', '.join(CHOICES)}")
  return value


def heap_variables(env: dict, *, libc: tuple[str, str], thp: str, cpu: bool,
                   mimalloc: str | None) -> dict[str, str] | None:
  """The environment variables that give this process the chosen host heap, or None when there
  is nothing to do: `system`, an accelerator doing the computing, an allocator or the tunable
  already in place (by us before the re-exec, or by the user), or no remedy available here."""
  wanted = choice(env)
  if wanted == "system" or not cpu:
    return None
  preload = env.get("LD_PRELOAD", "")
  if any(name in preload for name in _ALLOCATORS) or TUNABLE in env.get("GLIBC_TUNABLES", ""):
    return None
  if wanted in ("auto", "mimalloc") and mimalloc:
    out = {"LD_PRELOAD": f"{mimalloc} {preload}".strip()}
    if "MIMALLOC_PURGE_DELAY" not in env:
      out["MIMALLOC_PURGE_DELAY"] = PURGE_DELAY_MS
    if thp == "madvise" and "MIMALLOC_ALLOW_LARGE_OS_PAGES" not in env:
      out["MIMALLOC_ALLOW_LARGE_OS_PAGES"] = "1"
    return out
  if wanted == "mimalloc":
    raise ConfigError("T5X_LIKE_HOST_HEAP=mimalloc, but the cmeel-mimalloc package is not installed (or its "
                      "path holds a space or a colon); `pip install cmeel-mimalloc`, or use auto or huge_pages")
  if wanted in ("auto", "huge_pages") and _has_tunable(libc) and thp == "madvise":
    current = env.get("GLIBC_TUNABLES", "")
    return {"GLIBC_TUNABLES": f"{current}:{TUNABLE}=1" if current else f"{TUNABLE}=1"}
  return None


def child_env() -> dict[str, str]:
  """An environment for a child process that should run with this process's host heap."""
  return {**os.environ, **_applied}


def _settle_after_exec() -> bool:
  """In the re-executed process: note what was applied and give the variables that would
  reach every program it starts their old values. False if this process was not re-executed."""
  raw = os.environ.pop(_MARK, None)
  if raw is None:
    return False
  try:
    record = json.loads(raw)
    _applied.update(record["set"])
    for name, value in record["before"].items():
      if name not in _RESTORED:
        continue
      if value is None:
        os.environ.pop(name, None)
      else:
        os.environ[name] = value
  except (ValueError, KeyError, TypeError, AttributeError):
    pass  # a mangled marker: keep the environment as it is
  return True


def host_heap() -> str:
  """What this process's heap is, for benchmark reports: 'mimalloc', 'glibc' or 'other
  (LD_PRELOAD)', with the page kind it gets ('huge pages' or '4 KiB pages')."""
  loaded = ""
  try:
    with open("/proc/self/maps") as f:
      maps = f.read()
    loaded = next((name for name in _ALLOCATORS if f"lib{name}" in maps), "")
  except OSError:
    pass
  mode = thp_mode()
  env = {**os.environ, **_applied}
  if loaded == "mimalloc":
    huge = mode == "always" or (mode == "madvise" and env.get("MIMALLOC_ALLOW_LARGE_OS_PAGES") == "1")
    return f"mimalloc, {'huge pages' if huge else '4 KiB pages'}"
  if loaded:
    return f"{loaded} (LD_PRELOAD)"
  huge = mode == "always" or (mode == "madvise" and _has_tunable(platform.libc_ver())
                              and f"{TUNABLE}=1" in env.get("GLIBC_TUNABLES", "").split(":"))
  return f"glibc, {'huge pages' if huge else '4 KiB pages'}"


def reexec_with_host_heap() -> None:
  """Re-run this command line in a fresh interpreter with the chosen host heap, when that
  changes anything; returns (doing nothing) otherwise or if the exec fails. A bad
  T5X_LIKE_HOST_HEAP raises ConfigError."""
  if _settle_after_exec():
    return
  if (sys.platform != "linux" or not sys.executable or not getattr(sys, "orig_argv", None)
      or not os.path.isfile(sys.argv[0])):
    return  # only a command started from a file (the console script, `python -m`), not -c or stdin
  env = os.environ
  extra = heap_variables(env, libc=platform.libc_ver(), thp=thp_mode(), cpu=cpu_backend(env),
                         mimalloc=mimalloc_library())
  if extra is None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  marker = json.dumps({"set": extra, "before": {name: env.get(name) for name in extra}})
  try:
    os.execve(sys.executable, sys.orig_argv, {**env, **extra, _MARK: marker})
  except OSError:
    return  # the same command, with the heap it has
