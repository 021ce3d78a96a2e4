"""The runs table on handmade workdirs: finished, died (a stale lock), a truncated or
missing metrics file shown as such; sorting, filters, and the loss plot's lines."""

import json
import os
import time

import pytest

from t5x_like import cli
from t5x_like.errors import ConfigError
from t5x_like.runs import find_runs, format_table, plot, read_run, select


def _run(root, name, losses, evals=(), status="finished", steps=None, summary=True, lock_age=None):
  wd = root / name
  wd.mkdir(parents=True)
  with open(wd / "metrics.jsonl", "w") as f:
    for i, loss in enumerate(losses, 1):
      row = {"step": i, "loss": loss + 0.5, "train_loss_avg": loss, "tokens_seen": 100.0 * i, "tokens_per_s": 50.0 + i,
             "mfu": 0.25, "time": 1000.0 + i}
      if i in dict(evals):
        row["eval_loss"] = dict(evals)[i]
      f.write(json.dumps(row) + "\n")
  (wd / "config.json").write_text(json.dumps({"train": {"steps": steps or len(losses)}}))
  (wd / "status.json").write_text(json.dumps({"status": status}))
  if summary:
    (wd / "summary.json").write_text(json.dumps({"steps": len(losses), "wall_s": 42.0}))
  if lock_age is not None:
    (wd / "lock.json").write_text("{}")
    os.utime(wd / "lock.json", (time.time() - lock_age, time.time() - lock_age))
  return wd


def test_table_rows_read_from_the_files(tmp_path):
  _run(tmp_path, "a", [3.0, 2.0, 1.5], evals=[(2, 2.2), (3, 1.8)])
  _run(tmp_path, "b", [3.0, 2.5], evals=[(2, 2.6)], status="running", steps=10, summary=False, lock_age=300)
  live = _run(tmp_path, "c", [3.1], status="running", steps=10, summary=False, lock_age=0)
  with open(live / "metrics.jsonl", "a") as f:
    f.write('{"step": 2, "loss": 2.')  # killed mid-write
  (tmp_path / "d").mkdir()
  (tmp_path / "d" / "config.json").write_text(json.dumps({"train": {"steps": 5}}))  # no metrics yet
  runs = {r.name: r for r in (read_run(p, str(tmp_path)) for p in find_runs(str(tmp_path)))}
  assert sorted(runs) == ["a", "b", "c", "d"]
  a, b, c, d = runs["a"], runs["b"], runs["c"], runs["d"]
  assert (a.status, a.step, a.tokens_seen, a.train_loss, a.best_eval_loss, a.tokens_per_s, a.wall_s) == \
      ("finished", 3, 300.0, 1.5, 1.8, 53.0, 42.0)
  assert b.status == "died" and b.step == 2 and b.wall_s == 1.0
  assert c.status == "running" and "1 unreadable line(s)" in c.note and c.step == 1
  assert d.note == "no metrics.jsonl" and d.step is None
  table = format_table(select(list(runs.values()), sort="best_eval_loss"))
  lines = table.splitlines()
  assert lines[0].split()[:4] == ["name", "status", "step", "tokens_seen"]
  assert [line.split()[0] for line in lines[1:]] == ["a", "b", "c", "d"]  # no eval loss sorts last
  assert "3/3" in lines[1] and "2/10" in lines[2] and "25.0%" in lines[1]
  assert [r.name for r in select(list(runs.values()), "-tokens_per_s", ["status~run"])] == ["c"]
  assert [r.name for r in select(list(runs.values()), "name", ["train_loss<2.6"])] == ["a", "b"]
  with pytest.raises(ConfigError, match=r"--sort 'loss': unknown column; columns: name, status"):
    select(list(runs.values()), "loss")


def test_plot_draws_a_train_and_an_eval_line_per_run(tmp_path, capsys):
  _run(tmp_path, "a", [3.0, 2.0, 1.5], evals=[(2, 2.2), (3, 1.8)])
  _run(tmp_path, "b", [3.0, 2.5], evals=[(2, 2.6)])
  runs = [read_run(p, str(tmp_path)) for p in find_runs(str(tmp_path))]
  labels = plot(runs, str(tmp_path / "loss.png"))
  assert labels == ["a train", "a eval", "b train", "b eval"]
  from PIL import Image
  assert Image.open(tmp_path / "loss.png").size[0] > 500
  assert cli.main(["runs", str(tmp_path), "--plot", str(tmp_path / "p.png"), "--sort=-train_loss"]) == 0
  out = capsys.readouterr().out
  assert out.splitlines()[1].startswith("b ") and (tmp_path / "p.png").exists()


def test_a_plot_path_that_cannot_be_written_is_one_error(tmp_path):
  from t5x_like.errors import ConfigError
  from t5x_like.runs import plot

  with pytest.raises(ConfigError, match=r"--plot .*nowhere/x.png: cannot write it \(No such file or directory\)"):
    plot([], str(tmp_path / "nowhere" / "x.png"))


def test_garbled_metrics_a_log_only_run_and_an_empty_root(tmp_path, capsys):
  """Binary junk and a JSON line that is not an object in metrics.jsonl are counted in the
  note (the rows around them still read); a sweep run that stopped before writing its
  files shows train.log's last line; a root without runs says so."""
  wd = _run(tmp_path, "a", [3.0, 2.0])
  with open(wd / "metrics.jsonl", "ab") as f:
    f.write(b"42\n" + bytes(range(128, 256)) * 2 + b"\n")
  (tmp_path / "b").mkdir()
  (tmp_path / "b" / "train.log").write_text("[t5x_like] starting\nerror: workdir b is in use by pid 7\n")
  assert cli.main(["runs", str(tmp_path)]) == 0
  runs = {r.name: r for r in (read_run(p, str(tmp_path)) for p in find_runs(str(tmp_path)))}
  assert runs["a"].step == 2 and runs["a"].train_loss == 2.0 and "2 unreadable line(s)" in runs["a"].note
  assert runs["b"].status == "failed" and runs["b"].note == "train.log only: error: workdir b is in use by pid 7"
  assert "train.log only" in capsys.readouterr().out
  (tmp_path / "empty").mkdir()
  assert cli.main(["runs", str(tmp_path / "empty")]) == 0
  assert f"no runs under {tmp_path / 'empty'}" in capsys.readouterr().out


def test_values_of_the_wrong_type_are_a_note_not_a_crash(tmp_path, capsys):
  wd = _run(tmp_path, "a", [3.0, 2.0])
  with open(wd / "metrics.jsonl", "a") as f:
    f.write('{"step": 3, "loss": "abc", "tokens_seen": 5, "time": "x"}\n{"step": [1], "loss": 1.0}\n')
  (tmp_path / "b").mkdir()
  (tmp_path / "b" / "config.json").write_text('{"train": [1]}')
  (tmp_path / "c").mkdir()
  (tmp_path / "c" / "summary.json").write_text('{"wall_s": "x", "steps": 4}')
  assert cli.main(["runs", str(tmp_path)]) == 0
  runs = {r.name: r for r in (read_run(p, str(tmp_path)) for p in find_runs(str(tmp_path)))}
  assert runs["a"].note.startswith("files unreadable") or "not numbers" in runs["a"].note
  assert runs["b"].note.startswith("files unreadable")
  assert runs["c"].wall_s is None and "not numbers: wall_s" in runs["c"].note and runs["c"].step == 4
  assert "name" in capsys.readouterr().out
