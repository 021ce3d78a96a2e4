"""Every family trains to the same per-step losses (fp32, rel 1e-5) on one device and on
the meshes (8,1,1), (1,8,1), (1,1,8), (2,2,2) of 8 simulated devices."""

import jax
import numpy as np
import pytest

from t5x_like import config as C
from t5x_like.train.setup import init_state, make_setup

B, L, STEPS = 16, 16, 5
MESHES = [((8, 1, 1), "fsdp"), ((1, 8, 1), "fsdp"), ((1, 1, 8), "tp"), ((2, 2, 2), "fsdp_tp")]


def _batch(family):
  rng = np.random.default_rng(0)
  seg = np.ones((B, L), np.int32)
  seg[:, 10:] = 2
  seg[::4, 14:] = 0
  pos = np.where(np.arange(L) < 10, np.arange(L), np.arange(L) - 10)[None].repeat(B, 0).astype(np.int32)
  tok = lambda: rng.integers(3, 120, (B, L)).astype(np.int32)
  if family == "decoder":
    t = tok()
    return {"decoder_input_tokens": np.roll(t, 1, 1), "decoder_target_tokens": t, "decoder_segment_ids": seg,
            "decoder_positions": pos, "decoder_loss_weights": (seg > 0).astype(np.float32)}
  enc = {"encoder_input_tokens": tok(), "encoder_segment_ids": seg, "encoder_positions": pos}
  if family == "encoder":
    return {**enc, "encoder_target_tokens": tok(),
            "encoder_loss_weights": ((seg > 0) & (rng.random((B, L)) < 0.3)).astype(np.float32)}
  t = tok()
  return {**enc, "decoder_input_tokens": np.roll(t, 1, 1), "decoder_target_tokens": t, "decoder_segment_ids": seg,
          "decoder_positions": pos, "decoder_loss_weights": (seg > 0).astype(np.float32)}


def _losses(family, shape, rules):
  cfg = C.Config()
  cfg = C.replace(cfg, model=dict(family=family, vocab_size=128, d_model=32, num_layers=2, num_heads=8, d_ff=64,
                                  position="relative" if family == "encoder_decoder" else "rope"),
                  data=dict(seq_len=L), train=dict(batch_size=B, steps=10),
                  optimizer=dict(warmup_steps=0, learning_rate=1e-2),
                  mesh=dict(data=shape[0], fsdp=shape[1], tensor=shape[2], rules=rules))
  setup = make_setup(cfg, jax.devices()[:int(np.prod(shape))])
  state, step = init_state(setup, cfg, 0), setup.train_step
  batch = {k: jax.device_put(v, setup.batch_sharding) for k, v in _batch(family).items()}
  out = []
  for _ in range(STEPS):
    state, m = step(state, batch, jax.random.key(0))
    out.append(float(m["loss"]))
  return np.array(out)


@pytest.mark.slow  # about 2 min on 2 cores; the decoder case also runs in CI via test_step.py
@pytest.mark.parametrize("family", ["decoder", "encoder", "encoder_decoder"])
def test_losses_equal_on_every_mesh(family):
  ref = _losses(family, (1, 1, 1), "fsdp")
  assert ref[-1] < ref[0]
  for shape, rules in MESHES:
    np.testing.assert_allclose(_losses(family, shape, rules), ref, rtol=1e-5, err_msg=f"{family} {shape} {rules}")
