"""The non-finite guard reads the device only on logging steps, saves and the end, and
counts the kept flags in order exactly as a per-step read would."""

import jax
import jax.numpy as jnp
import pytest

from t5x_like.train import guards
from t5x_like.train.guards import NonFiniteGuard


@pytest.fixture
def reads(monkeypatch):
  calls = []
  real = jax.device_get

  def counting(x):
    calls.append(x)
    return real(x)

  monkeypatch.setattr(guards.jax, "device_get", counting)
  return calls


def flag(skipped: bool):
  return jnp.float32(1.0 if skipped else 0.0)


def test_flags_are_read_only_on_logging_steps_in_one_transfer(reads):
  g = NonFiniteGuard(limit=3, every=4)
  pattern = [1, 1, 0, 1, 1, 1, 1, 0]  # steps 1..8: the streak 4-6 reaches 3 at step 6
  seen = []
  for step, s in enumerate(pattern, start=1):
    seen.append(g.push(step, flag(s)))
  assert seen == [False, False, False, False, False, False, False, True]  # noticed at step 8
  assert len(reads) == 2 and [len(r) for r in reads] == [4, 4]
  # The reported streak is the one that tripped, not what followed it.
  assert (g.count, g.last) == (3, 6)


def test_a_save_reads_the_kept_flags_and_the_trip_is_kept(reads):
  g = NonFiniteGuard(limit=2, every=100)
  for step in (1, 2):
    assert not g.push(step, flag(True))
  assert reads == []
  assert g.streak() == {"count": 2, "last": 2}  # what a checkpoint at step 2 records
  assert g.tripped and g.push(3, flag(False))  # a later finite step does not undo the trip


def test_resumed_streak_continues_and_finite_steps_reset_it():
  g = NonFiniteGuard(limit=3, count=2, last=10, every=1)
  assert g.push(11, flag(True)) and (g.count, g.last) == (3, 11)
  g = NonFiniteGuard(limit=3, count=2, last=10, every=1)
  assert not g.push(11, flag(False)) and g.count == 0
  assert not g.flush()


def test_limit_zero_never_reads():
  g = NonFiniteGuard(limit=0, every=1)
  assert not g.push(1, flag(True)) and not g.flush() and g.count == 0
