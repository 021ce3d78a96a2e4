"""The KV-cached path returns exactly the tokens of the uncached one (the model re-run over
a fixed buffer at every step), greedy and with a fixed sampling seed, for each family and
position scheme. (The step-by-step argmax over full forwards that both must equal is in
tests/models: `model.predict` runs the cached path.)"""

import jax
import numpy as np
import pytest
from decoding_helpers import encoder_inputs, model_for, prompts, run
from flax import nnx

from t5x_like.decoding.generate import DecodeOptions, generate

GREEDY = DecodeOptions(max_new_tokens=6, eos_id=-1)
SAMPLED = DecodeOptions(max_new_tokens=6, eos_id=-1, temperature=1.0, top_k=20, top_p=0.9)


def _cached_equals_uncached(model, batch, options):
  rng = jax.random.key(7)
  cached, cached_lp = run(model, batch, options, rng)
  uncached, uncached_lp = run(model, batch, options, rng, cached=False)
  np.testing.assert_array_equal(cached, uncached)
  np.testing.assert_allclose(cached_lp, uncached_lp, rtol=1e-4, atol=1e-4)
  assert len(set(cached.ravel().tolist())) > 2  # not a degenerate constant output
  return cached


@pytest.mark.parametrize("style", ["rope_gqa", "learned",
                                   pytest.param("relative", marks=pytest.mark.slow)])
def test_decoder_cached_equals_uncached(style):
  model, batch = model_for(style), prompts()
  greedy = _cached_equals_uncached(model, batch, GREEDY)
  sampled = _cached_equals_uncached(model, batch, SAMPLED)
  assert (greedy != sampled).any()  # the seed really samples


def test_encoder_decoder_cached_equals_uncached():
  _cached_equals_uncached(model_for("t5"), encoder_inputs(), GREEDY)
  _cached_equals_uncached(model_for("t5"), encoder_inputs(), SAMPLED)


def test_eos_ends_each_row_and_pads_with_zeros():
  model, batch = model_for("learned"), prompts()
  free, _ = run(model, batch, GREEDY)
  eos = int(free[0, 2])  # the third token of row 0 plays EOS
  out, _ = run(model, batch, DecodeOptions(max_new_tokens=6, eos_id=eos))
  for row in range(out.shape[0]):
    hits = np.flatnonzero(free[row] == eos)
    stop = hits[0] if hits.size else len(free[row])
    assert out[row, :stop + 1].tolist() == free[row, :stop + 1].tolist()
    assert not out[row, stop + 1:].any()


def test_sampling_is_reproducible_and_seeded():
  model, batch = model_for("rope_gqa"), prompts()
  a, _ = run(model, batch, SAMPLED, jax.random.key(1))
  b, _ = run(model, batch, SAMPLED, jax.random.key(1))
  c, _ = run(model, batch, SAMPLED, jax.random.key(2))
  np.testing.assert_array_equal(a, b)
  assert (a != c).any()


def test_sharded_cache_decodes_the_same_tokens():
  """On a data x fsdp x tensor mesh, with the cache and activations constrained by the
  logical-axis rules, greedy tokens equal the single-device ones."""
  from jax.sharding import NamedSharding, PartitionSpec

  from t5x_like import config as C
  from t5x_like.runtime import RULE_SETS, activation_sharding, make_mesh
  model, batch = model_for("rope_gqa"), prompts(((5, 9, 12, 4), (8, 3), (30, 31, 32), (7,)))
  want, _ = run(model, batch, GREEDY)
  mesh = make_mesh(C.MeshConfig(data=2, fsdp=2, tensor=2), jax.devices()[:8])
  graphdef, state = nnx.split(model)
  # A jit of its own: the sharding constraints are added while tracing under the mesh.
  fn = jax.jit(lambda s, b: generate(nnx.merge(graphdef, s), b, GREEDY).tokens)
  with jax.set_mesh(mesh), activation_sharding(mesh, RULE_SETS["fsdp_tp"]):
    rows = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    got = np.asarray(fn(state, jax.device_put(batch, rows)))
  np.testing.assert_array_equal(got, want)
