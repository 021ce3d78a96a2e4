"""host_memory.py: the command line gives a CPU run a host heap that keeps the step's
temporaries mapped (mimalloc) or on huge pages (glibc), by re-running itself once with the
variables set, only where that changes anything."""

import ctypes
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from t5x_like import host_memory
from t5x_like.errors import ConfigError
from t5x_like.host_memory import heap_variables

GLIBC = ("glibc", "2.36")
LIB = "/opt/lib/libmimalloc.so"


def _vars(env=None, libc=GLIBC, thp="madvise", cpu=True, mimalloc=LIB):
  return heap_variables(env or {}, libc=libc, thp=thp, cpu=cpu, mimalloc=mimalloc)


def test_mimalloc_is_preloaded_where_installed():
  assert _vars() == {"LD_PRELOAD": LIB, "MIMALLOC_PURGE_DELAY": "1000", "MIMALLOC_ALLOW_LARGE_OS_PAGES": "1"}
  # Large OS pages only where the kernel grants them on request; the user's own settings kept.
  assert "MIMALLOC_ALLOW_LARGE_OS_PAGES" not in _vars(thp="never")
  assert _vars({"MIMALLOC_PURGE_DELAY": "0", "LD_PRELOAD": "/x/libfoo.so"}) == {
      "LD_PRELOAD": f"{LIB} /x/libfoo.so", "MIMALLOC_ALLOW_LARGE_OS_PAGES": "1"}
  # Already in place (by us before the re-exec, or an allocator of the user's): no second exec.
  for preload in (LIB, "/usr/lib/libjemalloc.so.2", "libtcmalloc_minimal.so.4"):
    assert _vars({"LD_PRELOAD": preload}) is None
  assert _vars({"T5X_LIKE_HOST_HEAP": "mimalloc"})["LD_PRELOAD"] == LIB


def test_glibc_huge_pages_where_mimalloc_is_not_installed_or_not_chosen():
  assert _vars(mimalloc=None) == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
  assert _vars({"T5X_LIKE_HOST_HEAP": "huge_pages"}) == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
  # The user's own tunables are kept, ours appended; one already naming ours is left alone.
  assert (_vars({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, mimalloc=None)
          == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"})
  assert _vars({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) is None
  # Kernel modes where the tunable changes nothing, an old or absent glibc.
  for thp in ("always", "never", ""):
    assert _vars(thp=thp, mimalloc=None) is None
  assert _vars(libc=("glibc", "2.34"), mimalloc=None) is None
  assert _vars(libc=("glibc", "2.35"), mimalloc=None) == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
  assert _vars(libc=("", ""), mimalloc=None) is None


def test_system_an_accelerator_and_bad_values():
  assert _vars({"T5X_LIKE_HOST_HEAP": "system"}) is None
  assert _vars({"T5X_LIKE_HOST_HEAP": " System "}) is None
  assert _vars(cpu=False) is None  # an accelerator computes: the host heap was not measured there
  with pytest.raises(ConfigError, match="T5X_LIKE_HOST_HEAP='jemalloc' is not a host heap; use one of auto"):
    _vars({"T5X_LIKE_HOST_HEAP": "jemalloc"})
  with pytest.raises(ConfigError, match="cmeel-mimalloc package is not installed"):
    _vars({"T5X_LIKE_HOST_HEAP": "mimalloc"}, mimalloc=None)


def test_the_cpu_backend_is_judged_without_importing_jax():
  assert host_memory.cpu_backend({"JAX_PLATFORMS": "cpu"})
  assert not host_memory.cpu_backend({"JAX_PLATFORMS": "cuda,cpu"})
  assert not host_memory.cpu_backend({"JAX_PLATFORMS": "tpu"})
  assert not host_memory.cpu_backend({"TPU_WORKER_ID": "0"})
  # This machine: no accelerator, no GPU plugin installed (the test extra has none).
  assert host_memory.cpu_backend({})


@pytest.mark.skipif(sys.platform != "linux", reason="the cmeel-mimalloc dependency is for Linux")
def test_the_installed_mimalloc_library_loads():
  path = host_memory.mimalloc_library()
  assert path and os.path.isfile(path), "cmeel-mimalloc is a dependency on Linux"
  lib = ctypes.CDLL(path)
  lib.mi_version.restype = ctypes.c_int
  assert lib.mi_version() >= 300  # mimalloc 3.x


_SCRIPT = """
import os, resource, sys
print("start", os.getpid(), os.environ.get("LD_PRELOAD", "-"), os.environ.get("GLIBC_TUNABLES", "-"), flush=True)
from t5x_like.cli import main
if sys.argv[1:] == ["faults"]:
  from t5x_like import host_memory
  host_memory.reexec_with_host_heap()
  # The programs this one starts get the old LD_PRELOAD; a child that should share the heap
  # is given child_env().
  print("after", os.environ.get("LD_PRELOAD", "-"), host_memory.child_env().get("LD_PRELOAD", "-"), flush=True)
  print("heap", host_memory.host_heap(), flush=True)
  import jax, jax.numpy as jnp
  f = jax.jit(lambda x, w: jnp.tanh(x @ w) @ w.T)  # a 64 MiB temporary per call
  x, w = jnp.ones((2048, 256)), jnp.full((256, 8192), 0.01)
  for _ in range(3):
    f(x, w).block_until_ready()
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(10):
    f(x, w).block_until_ready()
  print("faults", (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 10, flush=True)
  print("mimalloc loaded", "libmimalloc" in open("/proc/self/maps").read(), flush=True)
else:
  sys.argv = [sys.argv[0], "runs", "--help"]
  sys.exit(main())
"""


def _run(tmp_path, heap: str | None, *args):
  script = tmp_path / "heap_probe.py"
  script.write_text(textwrap.dedent(_SCRIPT))
  env = {k: v for k, v in os.environ.items()
         if k not in ("GLIBC_TUNABLES", "LD_PRELOAD", "T5X_LIKE_HOST_HEAP") and not k.startswith("MIMALLOC_")}
  env["JAX_PLATFORMS"] = "cpu"
  if heap is not None:
    env["T5X_LIKE_HOST_HEAP"] = heap
  out = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True,
                       timeout=300)
  starts = [line.split(" ")[1:] for line in out.stdout.splitlines() if line.startswith("start ")]
  return out, starts


@pytest.mark.skipif(sys.platform != "linux", reason="the re-exec is for Linux")
def test_a_command_line_reexecs_itself_once_with_mimalloc(tmp_path):
  """The command starts, re-executes in the same process (same pid) with mimalloc
  preloaded, and runs the command once there; with `system` it runs once as started."""
  out, starts = _run(tmp_path, None)
  assert out.returncode == 0, out.stderr
  assert out.stdout.count("usage: t5x-like runs") == 1  # the command ran, once
  assert len(starts) == 2 and starts[0][0] == starts[1][0]  # one exec, the same process
  assert starts[0][1] == "-" and starts[1][1] == host_memory.mimalloc_library()

  out, starts = _run(tmp_path, "system")
  assert out.returncode == 0 and out.stdout.count("usage: t5x-like runs") == 1
  assert len(starts) == 1 and starts[0][1:] == ["-", "-"]

  out, starts = _run(tmp_path, "huge_pages")
  assert out.returncode == 0 and out.stdout.count("usage: t5x-like runs") == 1
  name, version = platform.libc_ver()
  if (host_memory.thp_mode() == "madvise" and name == "glibc"
      and tuple(int(p) for p in version.split(".")[:2]) >= (2, 35)):
    assert len(starts) == 2 and starts[1][1:] == ["-", "glibc.malloc.hugetlb=1"]
  else:
    assert len(starts) == 1

  out, starts = _run(tmp_path, "tcmalloc")
  assert out.returncode == 2 and len(starts) == 1 and "usage" not in out.stdout
  assert out.stderr.strip().splitlines() == [
      "error: T5X_LIKE_HOST_HEAP='tcmalloc' is not a host heap; use one of auto, mimalloc, huge_pages, system"]


@pytest.mark.skipif(sys.platform != "linux", reason="the re-exec is for Linux")
def test_mimalloc_keeps_a_programs_temporaries_mapped(tmp_path):
  """The point of the heap: a jitted program whose 64 MiB temporary is allocated and freed
  on every call faults it in afresh each time under the system heap (16,384 4 KiB pages, or
  32 huge pages), and not under mimalloc."""
  out, starts = _run(tmp_path, None, "faults")
  assert out.returncode == 0, out.stderr
  assert len(starts) == 2 and "mimalloc loaded True" in out.stdout
  lib = host_memory.mimalloc_library()
  assert f"after - {lib}\n" in out.stdout  # restored for the programs it starts, kept for child_env()
  assert "heap mimalloc, " in out.stdout
  faults = int(next(line for line in out.stdout.splitlines() if line.startswith("faults ")).split()[1])
  assert faults < 1000, out.stdout

  out, starts = _run(tmp_path, "system", "faults")
  assert out.returncode == 0 and "mimalloc loaded False" in out.stdout
  assert "after - -\n" in out.stdout and "heap glibc, " in out.stdout
  if host_memory.thp_mode() != "always":
    assert "heap glibc, 4 KiB pages" in out.stdout
  system_faults = int(next(line for line in out.stdout.splitlines() if line.startswith("faults ")).split()[1])
  if host_memory.thp_mode() != "always":
    assert system_faults > 8000, out.stdout  # the cost the heap removes, seen on this machine
