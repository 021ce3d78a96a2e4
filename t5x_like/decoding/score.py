"""`t5x-like score`: the log-likelihood of whole sequences under a checkpoint.

Each record becomes one row of the family's training batch (the decoder side: inputs
are the targets shifted right behind the start token, every target weighted 1; an
encoder input beside it for encoder-decoders), and the row's score is the model's own
`score`: the sum of log P(target token | everything before it, and the input). Without a
start token (imported GPT-2) the first token is context only and is not scored.
Rows are padded (weight 0) to one width per side (`records.width_for`) and batched at a
fixed size, so a run compiles once.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from t5x_like.decoding import records as R
from t5x_like.decoding.loading import Loaded
from t5x_like.errors import ConfigError, DataError


def sequence_rows(ids: list[int], bos_id: int | None) -> tuple[list[int], list[int]]:
  """(decoder inputs, targets) of a sequence: behind `bos_id`, or from its second token."""
  if bos_id is None:
    return ids[:-1], ids[1:]
  return [bos_id] + ids[:-1], ids


def _side(side, inputs: list[list[int]], targets: list[list[int]] | None, width: int, rows: int) -> dict:
  tokens_bt, lengths_b = R.pad_rows(inputs, width, rows)
  out = {side.input_tokens: tokens_bt, side.segment_ids: R.segments(lengths_b, width)}
  if targets is not None:
    out[side.target_tokens] = R.pad_rows(targets, width, rows)[0]
    out[side.loss_weights] = R.segments(lengths_b, width).astype(np.float32)
  return out


def score(loaded: Loaded, records: list[R.Record], *, bos_id: int | None = 0,
          batch_size: int = 8) -> list[dict]:
  """Each record with "score" (log-likelihood in nats) and "tokens" (how many were scored)."""
  family = loaded.family
  if not family.generates:
    raise ConfigError(f"{loaded.step_dir} is an {loaded.cfg.family} model: a masked LM assigns no "
                      "likelihood to a sequence; score needs a decoder or encoder_decoder checkpoint")
  if batch_size < 1:
    raise ConfigError(f"--batch-size={batch_size} must be at least 1")
  contract = family.contract
  encoder = R.has_encoder(contract)
  tokens = R.Tokens(loaded.tokenizer, loaded.cfg.vocab_size)
  # The decoder of an encoder-decoder always starts from a token (T5: 0).
  start = 0 if encoder and bos_id is None else bos_id
  if encoder:
    inputs = [tokens.ids(r, R.INPUTS, R.INPUT_IDS, eos=True) for r in records]
    targets = [tokens.ids(r, R.TARGETS, R.TARGET_IDS, eos=True) for r in records]
  else:
    inputs, targets = None, [tokens.ids(r, R.TEXT, R.IDS, eos=True) for r in records]
  pairs = [sequence_rows(t, start) for t in targets]
  for r, (_, scored) in zip(records, pairs, strict=True):
    if not scored:
      raise DataError(f"{r.where}: nothing to score (the sequence needs at least "
                      f"{1 if start is not None else 2} tokens)")
  for r, ids in zip(records, inputs or [], strict=False):
    if not ids:
      raise DataError(f"{r.where}: the input is empty")
  dec_width = R.width_for([t for _, t in pairs], records, loaded.cfg)
  enc_width = R.width_for(inputs, records, loaded.cfg) if encoder else 0
  graphdef, state = nnx.split(loaded.model)
  fn = jax.jit(lambda s, b: nnx.merge(graphdef, s).score(b))
  out = []
  for lo in range(0, len(records), batch_size):
    hi = min(lo + batch_size, len(records))
    batch = _side(contract.target_side, [p[0] for p in pairs[lo:hi]], [p[1] for p in pairs[lo:hi]],
                  dec_width, batch_size)
    if encoder:
      batch.update(_side(contract.first_side, inputs[lo:hi], None, enc_width, batch_size))
    scores = np.asarray(jax.device_get(fn(state, batch)))
    for i in range(hi - lo):
      out.append({**records[lo + i].fields, "score": float(scores[i]), "tokens": len(pairs[lo + i][1])})
  return out
