"""host_memory.py: the command line turns on transparent huge pages for the host heap by
re-running itself once with glibc's tunable set, only where that changes anything."""

import os
import platform
import subprocess
import sys
import textwrap

from t5x_like import host_memory
from t5x_like.host_memory import tunables_with_huge_pages

GLIBC = ("glibc", "2.36")


def test_the_tunable_is_added_only_where_it_changes_something():
  assert tunables_with_huge_pages({}, GLIBC, "madvise") == "glibc.malloc.hugetlb=1"
  # The user's own tunables are kept, ours appended.
  assert (tunables_with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, GLIBC, "madvise")
          == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1")
  # Already set (by the user, or by us before the re-exec: no second exec).
  assert tunables_with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, GLIBC, "madvise") is None
  assert tunables_with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, GLIBC, "madvise") is None
  # Kernel modes where the tunable changes nothing, an old or absent glibc, the opt-out.
  for thp in ("always", "never", ""):
    assert tunables_with_huge_pages({}, GLIBC, thp) is None
  assert tunables_with_huge_pages({}, ("glibc", "2.34"), "madvise") is None
  assert tunables_with_huge_pages({}, ("glibc", "2.35"), "madvise") == "glibc.malloc.hugetlb=1"
  assert tunables_with_huge_pages({}, ("", ""), "madvise") is None
  for off in ("0", "false", "OFF"):
    assert tunables_with_huge_pages({"T5X_LIKE_HUGE_PAGES": off}, GLIBC, "madvise") is None
  assert tunables_with_huge_pages({}, GLIBC, "madvise", cpu=False) is None  # an accelerator computes


def test_the_cpu_backend_is_judged_without_importing_jax():
  assert host_memory.cpu_backend({"JAX_PLATFORMS": "cpu"})
  assert not host_memory.cpu_backend({"JAX_PLATFORMS": "cuda,cpu"})
  assert not host_memory.cpu_backend({"JAX_PLATFORMS": "tpu"})
  assert not host_memory.cpu_backend({"TPU_WORKER_ID": "0"})
  # This machine: no accelerator, no GPU plugin installed (the test extra has none).
  assert host_memory.cpu_backend({})


def _expected_on(env: dict) -> bool:
  mode = host_memory.thp_mode()
  name, version = platform.libc_ver()
  new_enough = name == "glibc" and tuple(int(p) for p in version.split(".")[:2]) >= (2, 35)
  return mode == "always" or (mode == "madvise" and new_enough and env.get("T5X_LIKE_HUGE_PAGES") != "0"
                              and host_memory.cpu_backend(env))


def test_a_command_line_reexecs_itself_once_with_the_tunable(tmp_path):
  """The command starts, re-executes in the same process (same pid) with the variable set,
  and runs the command once there; with the opt-out it runs once as started."""
  script = tmp_path / "cmd.py"
  script.write_text(textwrap.dedent("""
      import os, sys
      print("start", os.getpid(), os.environ.get("GLIBC_TUNABLES", ""), flush=True)
      from t5x_like.cli import main
      sys.argv = [sys.argv[0], "runs", "--help"]
      main()
  """))
  for opt_out in (False, True):
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "T5X_LIKE_HUGE_PAGES")}
    if opt_out:
      env["T5X_LIKE_HUGE_PAGES"] = "0"
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    starts = [line.split(" ", 2) for line in out.stdout.splitlines() if line.startswith("start ")]
    assert "usage: t5x-like runs" in out.stdout  # the command ran, once
    assert out.stdout.count("usage: t5x-like runs") == 1
    if _expected_on(env) and host_memory.thp_mode() == "madvise":
      assert len(starts) == 2 and starts[0][1] == starts[1][1]  # one exec, the same process
      assert starts[0][2] == "" and starts[1][2] == "glibc.malloc.hugetlb=1"
    else:
      assert len(starts) == 1 and starts[0][2] == ""
