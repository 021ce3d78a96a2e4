"""The train step gives the same numbers on every mesh, with accumulation, and skips NaNs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t5x_like import config as C
from t5x_like.train.setup import init_state, make_setup

B, L = 16, 32


def _cfg(**mesh):
  cfg = C.load_config_file("configs/tiny/gpt.py")
  cfg = C.replace(cfg, model=dict(vocab_size=128, d_model=64, num_layers=2, num_heads=4, d_ff=128),
                  data=dict(seq_len=L), train=dict(batch_size=B, steps=10),
                  optimizer=dict(warmup_steps=0, learning_rate=1e-2))
  return C.replace(cfg, mesh=mesh) if mesh else cfg


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  tok = rng.integers(3, 128, (B, L)).astype(np.int32)
  seg = np.ones((B, L), np.int32)
  seg[:, 20:] = 2
  seg[::3, 28:] = 0
  pos = np.where(np.arange(L) < 20, np.arange(L), np.arange(L) - 20)[None].repeat(B, 0).astype(np.int32)
  return {"decoder_input_tokens": tok, "decoder_target_tokens": np.roll(tok, -1, 1), "decoder_segment_ids": seg,
          "decoder_positions": pos, "decoder_loss_weights": (seg > 0).astype(np.float32)}


def _run(cfg, steps=5, devices=None, state_hook=None):
  setup = make_setup(cfg, devices, check=False)  # (1, 1, 8) "tp" replicates the 4 heads
  state = init_state(setup, cfg, 0)
  if state_hook:
    state = state_hook(state)
  step, sh = setup.train_step, setup.batch_sharding
  losses, metrics = [], []
  for _i in range(steps):
    batch = {k: jax.device_put(v, sh) for k, v in _batch(0).items()}
    state, m = step(state, batch, jax.random.key(0))
    losses.append(float(m["loss"]))
    metrics.append(jax.device_get(m))
  return np.array(losses), state, metrics


@pytest.fixture(scope="module")
def single_device_losses():
  cfg = _cfg(data=1, fsdp=1, tensor=1)
  return _run(cfg, devices=jax.devices()[:1])[0]


# (2,2,2) fsdp_tp shards every axis at once; the one-axis meshes (20-40 s each) are slow.
_slow = pytest.mark.slow
@pytest.mark.parametrize("shape,rules", [pytest.param((8, 1, 1), "fsdp", marks=_slow), pytest.param((1, 8, 1), "fsdp", marks=_slow),
                                         pytest.param((1, 1, 8), "tp", marks=_slow), ((2, 2, 2), "fsdp_tp")])
def test_mesh_matches_single_device(single_device_losses, shape, rules):
  cfg = _cfg(data=shape[0], fsdp=shape[1], tensor=shape[2], rules=rules)
  losses = _run(cfg)[0]
  np.testing.assert_allclose(losses, single_device_losses, rtol=1e-5)
  assert losses[-1] < losses[0]  # and it is actually training


def test_grad_accumulation_matches(single_device_losses):
  cfg = C.replace(_cfg(data=2, fsdp=2, tensor=2, rules="fsdp_tp"), train=dict(grad_accum_steps=4))
  np.testing.assert_allclose(_run(cfg)[0], single_device_losses, rtol=1e-5)


def test_nonfinite_step_is_skipped():
  cfg = _cfg(data=1, fsdp=1, tensor=1)

  def poison(state):
    p = state["params"]
    p["final_norm"]["scale"] = p["final_norm"]["scale"].at[0].set(jnp.nan)
    return state

  _, state, metrics = _run(cfg, steps=2, devices=jax.devices()[:1], state_hook=poison)
  assert [float(m["skipped"]) for m in metrics] == [1.0, 1.0]
  assert int(state["step"]) == 2
  emb = np.asarray(state["params"]["embed"]["embedding"])
  fresh = np.asarray(_run(cfg, steps=0, devices=jax.devices()[:1])[1]["params"]["embed"]["embedding"])
  np.testing.assert_array_equal(emb, fresh)  # untouched by the skipped updates
  assert float(np.asarray(state["opt_state"][1][0].count)) == 0
