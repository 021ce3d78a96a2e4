"""t5x_like: pretraining transformer LMs with JAX, Flax NNX, tf.data and Orbax."""

import glob as _glob
import importlib.util as _util
import os as _os


def accelerator_here(env) -> bool:
  """Whether anything says JAX could compute on an accelerator, judged without importing
  JAX: a TPU device (/dev/accel*, /dev/vfio/N), a TPU_* variable, or an installed GPU
  plugin."""
  if _glob.glob("/dev/accel*") or _glob.glob("/dev/vfio/[0-9]*"):
    return True
  if any(k.startswith("TPU_") for k in env):
    return True
  return any(_util.find_spec(p) for p in ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin",
                                          "jax_plugins"))


def _skip_absent_tpu() -> None:
  """With libtpu installed (the [tpu] and [test] extras) JAX probes for a TPU at start-up,
  and on a machine without one that probe prints three alarming error lines. When nothing
  says a TPU is here (no /dev/accel* or /dev/vfio device, no TPU_* variable) and no GPU
  plugin is installed, the CPU is the only backend JAX could pick: say so up front.
  JAX_PLATFORMS set by the user always wins."""
  if "JAX_PLATFORMS" in _os.environ or _util.find_spec("libtpu") is None:
    return
  if not accelerator_here(_os.environ):
    _os.environ["JAX_PLATFORMS"] = "cpu"


_skip_absent_tpu()
