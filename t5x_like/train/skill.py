"""Skill scores at the end of a run on the built-in corpus: held-out arithmetic problems
("17 + 25 =") answered by the trained model, one scorer per family.

- decoder: greedy continuation of the prompt; the first word must be the answer.
- encoder: the answer's tokens are replaced by mask tokens; every one must be predicted.
- encoder_decoder: the answer is one noise span (sentinel 0) at the end of the input;
  the greedy decoder output after the sentinel must be the answer.

The items come from their own random stream (`synthetic.skill_examples`), not the eval files.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from t5x_like.config import Config


def _pad_rows(rows: list[list[int]], min_width: int = 8) -> tuple[np.ndarray, np.ndarray]:
  """Left-aligned rows padded with 0 to a power-of-two width (few distinct compiles)."""
  width = int(2 ** math.ceil(math.log2(max(max(len(r) for r in rows), min_width))))
  out = np.zeros((len(rows), width), np.int32)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r
  return out, np.array([len(r) for r in rows], np.int32)


def _run(setup, params, batch: dict, **kwargs) -> np.ndarray:
  from flax import nnx  # noqa: PLC0415

  @jax.jit
  def predict(params, batch):
    model = nnx.merge(setup.graphdef, nnx.State(params))
    return model.predict(batch, **kwargs)

  with jax.set_mesh(setup.mesh):
    return np.asarray(jax.device_get(predict(params, batch)))


def decoder_skill(cfg: Config, setup, params, tok, examples) -> dict:
  from t5x_like.data import synthetic  # noqa: PLC0415
  tokens, lengths = _pad_rows([tok.encode(p) for p, _ in examples])
  out = _run(setup, params, {"prompt_tokens": tokens, "prompt_lengths": lengths},
             max_new_tokens=6, eos_id=tok.eos_id)
  correct = [synthetic.score_answer(tok.decode(out[i].tolist()), ans)
             for i, (_, ans) in enumerate(examples)]
  return {"skill_accuracy": float(np.mean(correct)), "skill_examples": float(len(examples)),
          "skill_name": "arithmetic answer accuracy (held-out, greedy continuation)"}


SCORERS = {"decoder": decoder_skill}


def skill_score(cfg: Config, setup, params, tokenizer_path: str) -> dict:
  """The family's skill score on `train.skill_eval_examples` held-out problems ({} when
  disabled, or when the data is not the built-in corpus)."""
  n = cfg.train.skill_eval_examples
  scorer = SCORERS.get(cfg.model.family)
  if n <= 0 or cfg.data.source != "synthetic" or scorer is None:
    return {}
  from t5x_like.data import synthetic, tokenizer  # noqa: PLC0415
  tok = tokenizer.Tokenizer(tokenizer_path)
  return scorer(cfg, setup, params, tok, synthetic.skill_examples(n, seed=cfg.data.seed + 1))
