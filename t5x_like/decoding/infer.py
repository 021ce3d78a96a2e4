"""`t5x-like infer`: generation from a checkpoint for prompts given as text or ids.

Rows are generated in batches of a fixed size (the last one padded by repeating a row)
and prompt buffers of one width for the whole input (the next power of two, or the
longest prompt exactly for learned positions, whose table must not be overrun), so a run
compiles once. Each output record holds the prompt record, the generated ids (up to,
not including, EOS), whether EOS ended them, their text when there is a tokenizer, and
their score (log-probability; for beam search, log-probability / GNMT length penalty).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from t5x_like.decoding import records as R
from t5x_like.decoding.generate import DecodeOptions, generate
from t5x_like.decoding.loading import Loaded
from t5x_like.errors import ConfigError, DataError

# Hugging Face model types whose tokenizers put the model's BOS id before every text.
BOS_PREPENDING_TYPES = ("llama", "mistral")


def default_bos(loaded: Loaded) -> int | None:
  """Models trained here read 0 before the first token; an import reads what its
  Hugging Face original does: Llama and Mistral their declared BOS, others their
  family's `imported_bos_id` (GPT-2 and Qwen2 nothing, T5 0)."""
  if not loaded.imported:
    return 0
  if loaded.hf.get("model_type") in BOS_PREPENDING_TYPES:
    bos = (loaded.hf.get("token_ids") or {}).get("bos_token_id")
    if isinstance(bos, int):
      return bos
  return loaded.family.imported_bos_id


def default_eos(loaded: Loaded) -> int:
  """An import's declared EOS (the first, where it lists several), else the tokenizer's,
  else 1 (T5's and ours)."""
  eos = (loaded.hf.get("token_ids") or {}).get("eos_token_id")
  if isinstance(eos, list) and eos:
    eos = eos[0]
  if isinstance(eos, int):
    return eos
  return 1 if loaded.tokenizer is None else loaded.tokenizer.eos_id


def check_generates(loaded: Loaded) -> None:
  if not loaded.family.generates:
    raise ConfigError(f"{loaded.step_dir} is an {loaded.cfg.family} model, which fills in masked "
                      "tokens but does not generate; infer needs a decoder or encoder_decoder checkpoint")


class Generator:
  """The loaded model's jitted `generate` for one option set."""

  def __init__(self, loaded: Loaded, options: DecodeOptions):
    graphdef, self.state = nnx.split(loaded.model)
    self.fn = jax.jit(lambda s, b, r: generate(nnx.merge(graphdef, s), b, options, r))

  def __call__(self, batch: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    out = jax.device_get(self.fn(self.state, batch, rng))
    return np.asarray(out.tokens), np.asarray(out.scores)


def infer(loaded: Loaded, records: list[R.Record], options: DecodeOptions, *,
          batch_size: int = 8, seed: int = 0) -> list[dict]:
  check_generates(loaded)
  options.check()
  if options.eos_id >= loaded.cfg.vocab_size:
    raise ConfigError(f"--eos-id {options.eos_id} is outside the vocabulary (size {loaded.cfg.vocab_size}); "
                      "pass the tokenizer's EOS id (1 for models trained here), or -1 for no EOS")
  if batch_size < 1:
    raise ConfigError(f"--batch-size={batch_size} must be at least 1")
  contract = loaded.family.contract
  tokens = R.Tokens(loaded.tokenizer, loaded.cfg.vocab_size)
  encoder = R.has_encoder(contract)
  rows = [tokens.ids(r, R.TEXT, R.IDS, eos=encoder) for r in records]
  for r, ids in zip(records, rows, strict=True):
    if not ids and (encoder or options.bos_id is None):
      raise DataError(f"{r.where}: the prompt is empty; this model needs at least one token to start from")
  width = R.width_for(rows, records, loaded.cfg)
  if loaded.cfg.position == "learned" and not encoder:  # the prompt and its continuation share the table
    fed = (options.bos_id is not None) + options.max_new_tokens - 1  # the last new token is not fed
    for r, ids in zip(records, rows, strict=True):
      if len(ids) + fed > loaded.cfg.max_len:
        raise DataError(f"{r.where}: {len(ids)} prompt tokens + --max-new-tokens {options.max_new_tokens} pass the "
                        f"model's {loaded.cfg.max_len} learned positions; shorten the prompt or --max-new-tokens")
  generator, key = Generator(loaded, options), jax.random.key(seed)
  out = []
  for start in range(0, len(rows), batch_size):
    chunk = rows[start:start + batch_size]
    tokens_bp, lengths_b = R.pad_rows(chunk, width, batch_size)
    # One key per record (its index in the input): a record's samples do not depend on the
    # batch size or on the records decoded beside it.
    keys_b = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(start, start + batch_size))
    got, scores = generator(R.prompt_batch(contract, tokens_bp, lengths_b), keys_b)
    for i, record in enumerate(records[start:start + len(chunk)]):
      out.append(_output(record, got[i].tolist(), float(scores[i]), options.eos_id, tokens))
  return out


def _output(record: R.Record, generated: list[int], score: float, eos_id: int, tokens: R.Tokens) -> dict:
  finished = eos_id in generated
  ids = generated[:generated.index(eos_id)] if finished else generated
  out = {"prompt": record.fields, R.IDS: ids, "finished": finished, "score": score}
  text = tokens.text(ids)
  if text is not None:
    out[R.TEXT] = text
  return out
