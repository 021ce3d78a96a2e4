"""`t5x-like score` against the model's own loss (a numpy reference from its logits),
`t5x-like infer` on text with a training workdir's tokenizer, and the commands' one-line
errors. Checkpoints are written as training and `convert` write them."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from decoding_helpers import T5_STYLE, random_params, tiny_cfg, with_params

from t5x_like import config as C
from t5x_like import features as F
from t5x_like.checkpoint import write_params
from t5x_like.cli import main


def _checkpoint(directory, cfg, seed=0):
  """WORKDIR-style `directory/0` holding random params and `cfg`; returns (step, model)."""
  params = random_params(cfg, seed)
  model_dict = C.to_dict(C.Config(model=cfg))["model"]
  return write_params(str(directory), params, model_dict, source=""), with_params(cfg, params)


def _jsonl(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


def _log_softmax(x):
  x = np.asarray(x, np.float64)
  m = x.max(-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
  return _checkpoint(tmp_path_factory.mktemp("dec") / "checkpoints", tiny_cfg(num_kv_heads=2))


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
  return _checkpoint(tmp_path_factory.mktemp("t5") / "checkpoints", tiny_cfg("encoder_decoder", **T5_STYLE))


SEQS = [[5, 9, 12, 4, 7], [8, 3], [30, 31, 32, 33, 34, 35, 36, 37, 38, 2]]


def _scores(step, tmp_path, rows):
  out = tmp_path / "scores.jsonl"
  assert main(["score", "--checkpoint", step, "--input", _jsonl(tmp_path / "in.jsonl", rows),
               "--output", str(out), "--batch-size", "2"]) == 0
  return [json.loads(line) for line in out.read_text().splitlines()]


def _padded(rows, width=10):
  out = np.zeros((len(rows), width), np.int32)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r
  return out


def test_decoder_score_is_the_loss(decoder, tmp_path):
  """Per row, the numpy log-softmax of the model's logits at the targets; over the
  batch, minus the model's summed loss. Padding at the end changes no earlier logit."""
  step, model = decoder
  got = _scores(step, tmp_path, [{"ids": s} for s in SEQS])
  inputs, targets = _padded([[0] + s[:-1] for s in SEQS]), _padded(SEQS)
  weights = _padded([[1] * len(s) for s in SEQS]).astype(np.float32)
  batch = {F.DECODER_INPUT_TOKENS: inputs, F.DECODER_TARGET_TOKENS: targets, F.DECODER_LOSS_WEIGHTS: weights}
  logits, (_, aux) = jax.jit(lambda b: (model(b), model.loss(b)))(batch)
  logp = _log_softmax(logits)
  for i, (seq, row) in enumerate(zip(SEQS, got, strict=True)):
    assert row["score"] == pytest.approx(logp[i, np.arange(len(seq)), seq].sum(), rel=1e-5)
    assert row["tokens"] == len(seq) and row["ids"] == seq
  assert sum(r["score"] for r in got) == pytest.approx(-float(aux["nll_sum"]), rel=1e-5)


def test_encoder_decoder_score_is_the_loss(t5, tmp_path):
  step, model = t5
  rows = [{"input_ids": s, "target_ids": s[::-1][:3]} for s in SEQS]
  got = _scores(step, tmp_path, rows)
  targets = [r["target_ids"] for r in rows]
  logits = jax.jit(model)({F.ENCODER_INPUT_TOKENS: _padded(SEQS),  # 0 is encoder padding
                           F.DECODER_INPUT_TOKENS: _padded([[0] + t[:-1] for t in targets])})
  logp = _log_softmax(logits)
  for i, (t, row) in enumerate(zip(targets, got, strict=True)):
    assert row["score"] == pytest.approx(logp[i, np.arange(len(t)), t].sum(), rel=1e-5)
    assert row["input_ids"] == rows[i]["input_ids"] and row["tokens"] == len(t)


def test_infer_reads_text_with_the_workdirs_tokenizer(tmp_path, spm_path, tok, capsys):
  """A checkpoint under WORKDIR/checkpoints finds WORKDIR/tokenizer/spm.model; --prompt
  prints the greedy continuation of the prompt's ids."""
  os.makedirs(tmp_path / "tokenizer")
  shutil.copy(spm_path, tmp_path / "tokenizer" / "spm.model")
  step, model = _checkpoint(tmp_path / "checkpoints", tiny_cfg(vocab_size=tok.vocab_size + 8))
  capsys.readouterr()
  assert main(["infer", "--checkpoint", step, "--prompt", "17 + 25 =", "--max-new-tokens", "5"]) == 0
  printed = capsys.readouterr().out.strip()
  ids = tok.encode("17 + 25 =")
  want = np.asarray(jax.jit(lambda b: model.predict(b, max_new_tokens=5, eos_id=tok.eos_id))(
      {F.PROMPT_TOKENS: jnp.asarray([ids]), F.PROMPT_LENGTHS: jnp.asarray([len(ids)])}))[0]
  assert printed == tok.decode(want.tolist()) and printed



def test_a_fine_tuned_checkpoint_finds_its_pretraining_tokenizer(tmp_path, spm_path):
  """A run warm-started from PRE/checkpoints keeps no tokenizer of its own: it reads PRE's,
  as its training did."""
  from t5x_like.decoding.loading import find_tokenizer

  os.makedirs(tmp_path / "pre" / "tokenizer")
  shutil.copy(spm_path, tmp_path / "pre" / "tokenizer" / "spm.model")
  step = str(tmp_path / "ft" / "checkpoints" / "100")
  meta = {"config": {"checkpoint": {"init_from": str(tmp_path / "pre" / "checkpoints" / "750")}}}
  assert find_tokenizer(step, meta) == str(tmp_path / "pre" / "tokenizer" / "spm.model")
  assert find_tokenizer(step, {"config": {}}) == ""


def _fails(argv, capsys, *needles):
  capsys.readouterr()
  assert main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and len(err.splitlines()) == 1, err
  for n in needles:
    assert n in err, err


def test_errors_are_one_line(decoder, tmp_path, capsys):
  step, _ = decoder
  infer = ["infer", "--checkpoint", step, "--input"]
  _fails(["infer", "--checkpoint", str(tmp_path / "nowhere"), "--prompt", "hi"], capsys, "nowhere does not exist")
  (tmp_path / "empty").mkdir()
  _fails(["infer", "--checkpoint", str(tmp_path / "empty"), "--prompt", "hi"], capsys,
         "empty holds no checkpoint yet")
  _fails(infer + [str(tmp_path / "missing.jsonl")], capsys, "missing.jsonl")
  bad = _jsonl(tmp_path / "bad.jsonl", [{"ids": [1, 2]}])
  with open(bad, "a") as f:
    f.write("{not json\n")
  _fails(infer + [bad], capsys, "bad.jsonl:2", "JSON")
  _fails(infer + [_jsonl(tmp_path / "t.jsonl", [{"ids": [3]}, {"text": "hello"}])], capsys,
         "t.jsonl:2", "--tokenizer")
  _fails(infer + [_jsonl(tmp_path / "v.jsonl", [{"ids": [3, 999]}])], capsys, "v.jsonl:1", "999")
  _fails(infer + [_jsonl(tmp_path / "n.jsonl", [{"prompt": "x"}])], capsys, "n.jsonl:1", '"ids"')
  _fails(["infer", "--checkpoint", step, "--prompt", "hi"], capsys, "tokenizer")
  _fails(infer + [bad, "--beam-size", "4", "--temperature", "0.7"], capsys, "beam")  # before reading
  _fails(["score", "--checkpoint", step, "--input", _jsonl(tmp_path / "e.jsonl", [{"ids": []}])],
         capsys, "e.jsonl:1")
  ok = _jsonl(tmp_path / "ok.jsonl", [{"ids": [3, 4]}])
  _fails(infer + [ok, "--eos-id", "9999"], capsys, "--eos-id 9999 is outside the vocabulary (size 61)")
  # an --output that cannot be written fails before the model runs (it failed after, bare)
  _fails(infer + [ok, "--output", str(tmp_path / "no" / "o.jsonl")], capsys, "does not exist; create it")
  _fails(["score", "--checkpoint", step, "--input", ok, "--output", str(tmp_path)], capsys, "is a directory")
  for bos in ("99999", "-5"):  # an id outside the vocabulary read NaN scores and empty output
    _fails(infer + [ok, "--bos-id", bos], capsys, f"--bos-id={bos} is outside the model's vocabulary of 61")
    _fails(["score", "--checkpoint", step, "--input", ok, "--bos-id", bos], capsys, "outside the model's vocabulary")


def test_counts_below_one_are_refused_by_the_flags(capsys):
  """0 is no way to ask for a default: argparse's own one-line error (exit 2)."""
  for argv in (["bench", "--config", "configs/tiny/gpt.py", "--steps", "0"],
               ["bench", "--config", "configs/tiny/gpt.py", "--batch", "0"],
               ["eval", "--workdir", "w", "--batches", "-1"],
               ["infer", "--checkpoint", "c", "--prompt", "x", "--max-new-tokens", "0"],
               ["tokenizer", "train", "--input", "x", "--vocab-size", "0", "--output", "o"]):
    with pytest.raises(SystemExit) as e:
      main(argv)
    assert e.value.code == 2
    assert "must be at least 1, got" in capsys.readouterr().err


def test_an_encoder_only_checkpoint_does_not_generate(tmp_path, capsys):
  step, _ = _checkpoint(tmp_path / "checkpoints", tiny_cfg("encoder"))
  rows = _jsonl(tmp_path / "p.jsonl", [{"ids": [3, 4]}])
  _fails(["infer", "--checkpoint", step, "--input", rows], capsys, "encoder", "does not generate")
  _fails(["score", "--checkpoint", step, "--input", rows], capsys, "encoder")


def test_scores_that_are_not_finite_are_written_as_null(tmp_path):
  """A diverged model (NaN weights) scores NaN, which `json.dumps` writes as the non-JSON
  `NaN`: the output stays strict JSON, with null."""
  cfg = tiny_cfg()
  params = jax.tree.map(lambda x: np.full_like(np.asarray(x), np.nan), random_params(cfg, 0))
  step = write_params(str(tmp_path / "checkpoints"), params, C.to_dict(C.Config(model=cfg))["model"], source="")
  rows = _jsonl(tmp_path / "in.jsonl", [{"ids": [5, 9, 12]}])
  assert main(["score", "--checkpoint", step, "--input", rows, "--output", str(tmp_path / "out.jsonl")]) == 0

  def strict(name):
    raise ValueError(f"not JSON: {name}")

  (row,) = [json.loads(line, parse_constant=strict) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
  assert row["score"] is None and row["tokens"] == 3


def test_a_prompt_too_long_for_learned_positions_is_named(tmp_path, capsys):
  """Learned positions (32 here): the prompt with bos and all but the last new token must
  fit. At the boundary the run works; one token more names the record (it was a
  model-level error naming none)."""
  from decoding_helpers import DECODER_STYLES

  step, _ = _checkpoint(tmp_path / "ck", tiny_cfg(**DECODER_STYLES["learned"]))
  rows = [{"ids": [3, 4]}, {"ids": list(range(3, 23))}]  # the second: 20 tokens + bos = 21 positions
  ok = _jsonl(tmp_path / "in.jsonl", rows)
  assert main(["infer", "--checkpoint", step, "--input", ok, "--max-new-tokens", "12"]) == 0  # 21 + 11 = 32
  _fails(["infer", "--checkpoint", step, "--input", ok, "--max-new-tokens", "13"], capsys,
         "in.jsonl:2: 20 prompt tokens + --max-new-tokens 13 pass the model's 32 learned positions")


def test_a_records_samples_do_not_depend_on_the_batch(decoder, tmp_path):
  """Each record draws with its own key (the seed and its index in the input): the same
  tokens whether it is decoded alone, in a batch of 2 or of 8, beside other records."""
  step, _ = decoder
  rows = [{"ids": [5, 9, 12]}, {"ids": [8, 3]}, {"ids": [30, 31, 32, 33]}]
  outs = []
  for batch in ("1", "2", "8"):
    out = tmp_path / f"o{batch}.jsonl"
    assert main(["infer", "--checkpoint", step, "--input", _jsonl(tmp_path / "in.jsonl", rows), "--output", str(out),
                 "--temperature", "1.0", "--seed", "7", "--max-new-tokens", "12", "--eos-id", "-1",
                 "--batch-size", batch]) == 0
    outs.append([json.loads(line)["ids"] for line in out.read_text().splitlines()])
  assert outs[0] == outs[1] == outs[2]
  assert len({tuple(ids) for ids in outs[0]}) == 3  # and they are samples, not one greedy path


def test_checkpoint_paths_find_the_newest_complete_step(decoder, tmp_path, capsys):
  """A run's workdir reads its latest step; a newer step folder without state/ (a copy cut
  short, a stray mkdir) no longer hides the complete step before it; eval skips it with a
  line."""
  from t5x_like.checkpoint import find_step_dir
  from t5x_like.train.eval_run import checkpoints_to_evaluate

  step, _ = decoder
  run = tmp_path / "run"
  shutil.copytree(os.path.dirname(step), run / "checkpoints")
  (run / "checkpoints" / "80").mkdir()
  assert find_step_dir(str(run), "--checkpoint") == str(run / "checkpoints" / "0")
  assert find_step_dir(str(run / "checkpoints"), "--checkpoint") == str(run / "checkpoints" / "0")
  assert checkpoints_to_evaluate(str(run), "", True) == [str(run / "checkpoints" / "0")]
  assert f"skipping {run / 'checkpoints' / '80'}: not a complete checkpoint" in capsys.readouterr().out
  with pytest.raises(C.ConfigError, match="--all-checkpoints evaluates every kept step"):
    checkpoints_to_evaluate(str(run), step, True)
  ok = _jsonl(tmp_path / "ok.jsonl", [{"ids": [3, 4]}])
  assert main(["infer", "--checkpoint", str(run), "--input", ok, "--max-new-tokens", "2"]) == 0
  (tmp_path / "bare" / "5").mkdir(parents=True)
  _fails(["infer", "--checkpoint", str(tmp_path / "bare"), "--input", ok], capsys,
         "holds no complete checkpoint (no state/ in 5)")
