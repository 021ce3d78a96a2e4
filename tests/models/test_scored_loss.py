"""model.mlm_scored_chunk: the encoder's MLM head runs on the scored positions only, with the
loss, counters and gradients of the head over every position, and chunks without a scored
position are skipped."""

import dataclasses

import jax
import numpy as np
import pytest
from test_chunked_loss import BERT, batch_for, loss_and_grads, tiny

from t5x_like import features as F
from t5x_like.models import flops_per_sequence
from t5x_like.models.base import head_flops, stack_flops
from t5x_like.models.losses import cross_entropy, scored_cross_entropy


def _assert_same(a, b):
  (total, aux, grads), (s_total, s_aux, s_grads) = a, b
  np.testing.assert_allclose(s_total, total, rtol=1e-5)
  assert set(s_aux) == set(aux)
  for (path, v), sv in zip(jax.tree.leaves_with_path(aux), jax.tree.leaves(s_aux), strict=True):
    np.testing.assert_allclose(sv, v, rtol=1e-5, err_msg=jax.tree_util.keystr(path))
  # Gradients that are zero in exact arithmetic (a norm's bias before a softmax) are float
  # noise in both: the tolerance is relative to the largest gradient anywhere.
  scale = max(float(np.abs(np.asarray(g)).max()) for g in jax.tree.leaves(grads))
  for (path, g), sg in zip(jax.tree.leaves_with_path(grads), jax.tree.leaves(s_grads), strict=True):
    np.testing.assert_allclose(np.asarray(sg), np.asarray(g), rtol=1e-5, atol=1e-6 * scale,
                               err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("model, chunk", [(dict(BERT, z_loss=1e-3), 3), (dict(BERT, z_loss=1e-3), 32),
                                          (dict(BERT, tie_embeddings=False), 3),
                                          (dict(BERT, nsp=True, num_labels=2), 3)])
def test_scored_head_equals_the_head_on_every_position(model, chunk):
  cfg = tiny(**model)
  batch = batch_for(cfg, length=13)  # weights 0, 1 or 2: about a third of the positions unscored
  if cfg.nsp:
    batch[F.ENCODER_CLASS_LABELS] = np.array([[0], [1], [1]], np.int32)
  whole = loss_and_grads(cfg, batch)
  assert whole[1]["weight_sum"] > 0
  _assert_same(whole, loss_and_grads(dataclasses.replace(cfg, mlm_scored_chunk=chunk), batch))


def test_chunks_without_a_scored_position_never_run_the_head():
  rng = np.random.default_rng(0)
  b, t, d, v, chunk = 4, 20, 8, 11, 4
  x = rng.normal(size=(b, t, d)).astype(np.float32)
  w_dv = rng.normal(size=(d, v)).astype(np.float32)
  targets = rng.integers(0, v, (b, t)).astype(np.int32)
  weights = np.zeros((b, t), np.float32)
  for row, cols in enumerate([[3, 17], [0], [19, 5, 11], []]):  # at most 3 per row: the first chunk
    weights[row, cols] = row + 1.0
  calls = []

  def head(x_bcd):
    jax.debug.callback(lambda: calls.append(1))
    return x_bcd @ w_dv

  total, aux = jax.jit(lambda x: scored_cross_entropy(head, x, targets, weights, 0.0, chunk))(x)
  jax.effects_barrier()
  assert len(calls) == 1  # one of the 5 chunks
  # The reference: numpy's cross-entropy over every position.
  logits = x @ w_dv
  logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
  nll = logz - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
  np.testing.assert_allclose(float(total), float((nll * weights).sum()), rtol=1e-5)
  np.testing.assert_allclose(float(aux["weight_sum"]), weights.sum())
  ref_total, _ = cross_entropy(logits, targets, weights)
  np.testing.assert_allclose(float(total), float(ref_total), rtol=1e-5)


def test_flops_count_the_scored_head_positions_only():
  cfg = tiny(**BERT)
  stack, head = stack_flops(cfg, cfg.num_layers, 128), head_flops(cfg, 128)
  assert flops_per_sequence(dataclasses.replace(cfg, mlm_scored_chunk=32), 128, scored=0.15) == pytest.approx(
      stack + 0.15 * head)
  assert flops_per_sequence(dataclasses.replace(cfg, mlm_scored_chunk=0), 128, scored=0.15) == pytest.approx(
      stack + head)
  dec = tiny(family="decoder")
  assert flops_per_sequence(dec, 128, scored=0.15) == flops_per_sequence(dec, 128)
