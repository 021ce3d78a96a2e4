"""Garbled checkpoint bytes never load silently: random bytes written at several offsets of
every file of a step either make the restore fail with a CheckpointError, or the restored
state and data position are exactly the saved ones (bytes the restore does not read)."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from jax.sharding import NamedSharding, PartitionSpec

from t5x_like import config as C
from t5x_like.checkpoint import Checkpointer, integrity
from t5x_like.errors import CheckpointError


def _mesh():
  return jax.sharding.Mesh(np.asarray(jax.devices()).reshape(2, 4), ("a", "b"))


def _state(mesh):
  rng = np.random.default_rng(0)
  put = lambda x, spec: jax.device_put(x, NamedSharding(mesh, spec))
  return {"step": put(np.int32(7), PartitionSpec()),
          "params": {"w": put(rng.normal(size=(64, 32)).astype(np.float32), PartitionSpec("a", "b")),
                     "b": put(rng.normal(size=(32,)).astype(np.float32), PartitionSpec()),
                     "h": put(rng.normal(size=(16, 8)).astype(jnp.bfloat16), PartitionSpec(None, "b"))}}


def test_sums_do_not_depend_on_the_sharding_and_see_every_bit():
  mesh = _mesh()
  state = _state(mesh)
  host = jax.tree.map(np.asarray, state)
  assert integrity.array_sums(state) == integrity.array_sums(jax.tree.map(jnp.asarray, host))
  w = host["params"]["w"].copy()
  w.view(np.uint32)[5, 3] ^= 1  # one bit
  changed = dict(host, params=dict(host["params"], w=w))
  assert integrity.mismatches(jax.tree.map(jnp.asarray, changed), integrity.array_sums(state)) == ["['params']['w']"]
  swapped = dict(host, params=dict(host["params"], w=host["params"]["w"][::-1].copy()))  # same values, moved
  assert integrity.mismatches(jax.tree.map(jnp.asarray, swapped), integrity.array_sums(state)) == ["['params']['w']"]


def _iterator():
  return iter(tf.data.Dataset.range(1000).shuffle(50, seed=1).batch(4))


def test_garbled_bytes_anywhere_fail_or_restore_exactly(tmp_path):
  mesh = _mesh()
  state = _state(mesh)
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)
  it = _iterator()
  for _ in range(3):
    next(it)
  ck = Checkpointer(str(tmp_path / "ck"), C.CheckpointConfig(async_save=False))
  ck.save(7, state, it, {"step": 7})
  ck.close()
  want_next = next(it).numpy()
  step_dir = tmp_path / "ck" / "7"
  files = sorted(str(p.relative_to(step_dir)) for p in step_dir.rglob("*") if p.is_file())
  assert any(f.startswith("state/") for f in files) and any(f.startswith("data/") for f in files)
  rng = np.random.default_rng(0)
  outcomes = {}
  for i, rel in enumerate(files):
    size = os.path.getsize(step_dir / rel)
    # The array data at the start, the middle and the end; every other file at one of them
    # in turn (each restore costs about a second).
    offsets = (0, size // 2, max(size - 16, 0))
    for where in set(offsets) if rel.startswith("state/d/") else [offsets[i % 3]]:
      work = tmp_path / "work"
      shutil.rmtree(work, ignore_errors=True)
      shutil.copytree(tmp_path / "ck", work)
      with open(work / "7" / rel, "r+b") as f:
        f.seek(where)
        f.write(rng.integers(0, 256, min(4096, max(size - where, 1)), dtype=np.uint8).tobytes())
      fresh = _iterator()
      ck = Checkpointer(str(work), C.CheckpointConfig())
      try:
        restored = ck.restore(7, abstract, fresh)
      except CheckpointError:
        outcomes[(rel, where)] = "detected"
        continue
      finally:
        ck.close()
      for a, b in zip(jax.tree.leaves(restored.state), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"{rel} @ {where} loaded silently")
      np.testing.assert_array_equal(next(fresh).numpy(), want_next, err_msg=f"{rel} @ {where}")
      outcomes[(rel, where)] = "unread"
  # The array data the restore reads (OCDBT's merged state/d/ files; the per-process
  # ocdbt.process_*/d/ files are the pre-merge copies the manifest no longer points at), the
  # metadata and the iterator files were caught wherever they were garbled.
  for (rel, where), outcome in outcomes.items():
    if rel.startswith(("state/d/", "data/process_")) or rel == "meta/metadata":
      assert outcome == "detected", (rel, where)
  assert sum(rel.startswith("state/d/") for rel, _ in outcomes) >= 2
  assert sum(o == "detected" for o in outcomes.values()) >= 10, outcomes


def test_an_intact_iterator_of_another_pipeline_is_not_called_corrupt(tmp_path):
  """A step saved by another input pipeline layout (an earlier reader, other data settings)
  restores no data position, but its files are intact: the error names
  reset_data_iterator and never advises setting the good step aside (skip_corrupt keeps it
  too: start.resume re-raises a DataLayoutError)."""
  import pytest

  from t5x_like.checkpoint.manager import DataLayoutError

  mesh = _mesh()
  state = _state(mesh)
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)
  it = _iterator()
  next(it)
  ck = Checkpointer(str(tmp_path / "ck"), C.CheckpointConfig(async_save=False))
  ck.save(7, state, it, {"step": 7})
  ck.close()
  other = iter(tf.data.Dataset.range(1000).shuffle(50, seed=1).map(lambda x: x + 1).batch(4))
  ck = Checkpointer(str(tmp_path / "ck"), C.CheckpointConfig())
  try:
    with pytest.raises(CheckpointError, match="reset_data_iterator=true") as e:
      ck.restore(7, abstract, other)
    assert "skip_corrupt" not in str(e.value) and "files are intact" in str(e.value)
    assert isinstance(e.value.__cause__, DataLayoutError)
    restored = ck.restore(7, abstract, None)  # what reset_data_iterator does: the state alone
  finally:
    ck.close()
  for a, b in zip(jax.tree.leaves(restored.state), jax.tree.leaves(state), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_an_iterator_copied_from_another_step_is_refused(tmp_path):
  """data/ of step 7 copied over step 9's: every file matches its own SHA-256, but the
  position is step 7's, and restoring it would train those batches twice. The restore
  refuses it; step 9's own iterator restores the position it was saved at."""
  mesh = _mesh()
  state = _state(mesh)
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)
  it = _iterator()
  ck = Checkpointer(str(tmp_path / "ck"), C.CheckpointConfig(async_save=False))
  ck.save(7, state, it, {"step": 7, "train_input": {}})
  next(it)
  ck.save(9, state, it, {"step": 9, "train_input": {}})
  ck.close()
  want_next = next(it).numpy()
  shutil.copytree(tmp_path / "ck", tmp_path / "swapped")
  shutil.rmtree(tmp_path / "swapped" / "9" / "data")
  shutil.copytree(tmp_path / "ck" / "7" / "data", tmp_path / "swapped" / "9" / "data")
  import json

  import pytest
  digests = tmp_path / "swapped" / "9" / "data" / "process_0_of_1.sha256.json"
  for old_format in (False, True):  # the digest file as a step without tags wrote it: still refused
    if old_format:
      digests.write_text(json.dumps(json.loads(digests.read_text())["files"]))
    ck = Checkpointer(str(tmp_path / "swapped"), C.CheckpointConfig())
    try:
      with pytest.raises(CheckpointError, match="saved with another step or run.*reset_data_iterator=true") as e:
        ck.restore(9, abstract, _iterator())
      assert "skip_corrupt" not in str(e.value)  # the state is intact: never advise setting it aside
    finally:
      ck.close()
  fresh = _iterator()
  ck = Checkpointer(str(tmp_path / "ck"), C.CheckpointConfig())
  try:
    ck.restore(9, abstract, fresh)
  finally:
    ck.close()
  np.testing.assert_array_equal(next(fresh).numpy(), want_next)


def test_a_file_named_like_a_step_is_refused_not_written_over(tmp_path):
  import pytest

  (tmp_path / "ck").mkdir()
  (tmp_path / "ck" / "40").write_text("notes")
  with pytest.raises(CheckpointError, match=r"ck/40 is not a checkpoint step directory \(a file named like one\)"):
    Checkpointer(str(tmp_path / "ck"), C.CheckpointConfig())
  assert (tmp_path / "ck" / "40").read_text() == "notes"
