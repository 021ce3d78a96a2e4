"""A trainer that stalled past the workdir lock's lease (suspended, its VM frozen) while
another trainer took the workdir over stops before its next save and writes nothing more
there: no checkpoint, no status, no summary, and the new owner's lock stays."""

import json

import pytest
from checkpoint_runs import small_cfg  # tests/train/checkpoint_runs.py

from t5x_like.train import hooks
from t5x_like.train.loop import run
from t5x_like.workdir import LOCK_NAME, STATUS_NAME, WorkdirError

pytestmark = pytest.mark.usefixtures("cache_dir")  # tests/train/conftest.py

OTHER = {"host": "other-host", "pid": 4242, "since": "just now", "run_id": "the-new-owner"}


def test_a_trainer_whose_lock_was_taken_over_stops_before_its_next_save(tmp_path, data, monkeypatch):
  wd = tmp_path / "run"
  write = hooks.WriteHook.after_step

  def after_step(self, r, row):  # after step 1, the other trainer takes the stale lock over
    write(self, r, row)
    if r.step == 1:
      (wd / LOCK_NAME).write_text(json.dumps(OTHER))
      (wd / STATUS_NAME).write_text(json.dumps({"status": "running", "pid": 4242}))

  monkeypatch.setattr(hooks.WriteHook, "after_step", after_step)
  with pytest.raises(WorkdirError) as e:
    run(small_cfg(4, data), str(wd))  # a checkpoint every 2 steps
  msg = str(e.value)
  assert "another trainer took over" in msg and "host other-host, pid 4242" in msg and "saving step 2" in msg
  assert not (wd / "checkpoints").exists() or not any(p.name[0].isdigit() for p in (wd / "checkpoints").iterdir())
  assert json.load(open(wd / LOCK_NAME)) == OTHER  # not released: it is not ours
  assert json.load(open(wd / STATUS_NAME)) == {"status": "running", "pid": 4242}
  assert not (wd / "summary.json").exists()
  rows = [json.loads(line)["step"] for line in open(wd / "metrics.jsonl")]
  assert rows == [1]  # nothing logged after the takeover
