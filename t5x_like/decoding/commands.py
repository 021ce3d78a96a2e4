"""The `t5x-like infer` and `t5x-like score` commands behind the argument parsing of
t5x_like/cli.py: flags to options, records in, records out."""

from __future__ import annotations

import os

from t5x_like.decoding import records as R
from t5x_like.errors import ConfigError, DataError


def parse_bos(text: str, default: int | None, vocab_size: int | None = None) -> int | None:
  """--bos-id: "auto" (the checkpoint's convention), "none", or an id of the vocabulary."""
  if text == "auto":
    return default
  if text == "none":
    return None
  try:
    bos = int(text)
  except ValueError:
    raise ConfigError(f"--bos-id={text!r}: use auto, none or a token id") from None
  if bos < 0 or (vocab_size is not None and bos >= vocab_size):
    raise ConfigError(f"--bos-id={bos} is outside the model's vocabulary of {vocab_size}; use auto, none "
                      f"or an id from 0 to {vocab_size - 1}" if vocab_size else f"--bos-id={bos}: ids are >= 0")
  return bos


def _records(path: str) -> list[R.Record]:
  if not os.path.isfile(path):
    raise DataError(f"--input {path}: no such file")
  return R.read_jsonl(path)


def _emit(rows: list[dict], output: str) -> None:
  if output:
    R.write_jsonl(output, rows)
    print(f"wrote {len(rows)} records to {output}")
  else:
    for r in rows:
      print(R.json_line(r))


def _check_output(output: str) -> None:
  """An --output that cannot be written fails before the model runs, not after."""
  folder = os.path.dirname(os.path.abspath(output)) if output else ""
  if folder and not os.path.isdir(folder):
    raise ConfigError(f"--output {output}: the folder {folder} does not exist; create it or choose another path")
  if output and os.path.isdir(output):
    raise ConfigError(f"--output {output} is a directory; name a file, e.g. {os.path.join(output, 'out.jsonl')}")
  if folder and not os.access(folder, os.W_OK):
    raise ConfigError(f"--output {output}: the folder {folder} is not writable")


def run_infer(args) -> int:
  from t5x_like.decoding import infer, loading
  from t5x_like.decoding.generate import DecodeOptions
  if args.prompt is not None and args.output:
    raise ConfigError("--output goes with --input; --prompt prints its continuation")
  flags = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
               top_p=args.top_p, beam_size=args.beam_size, length_penalty=args.length_penalty)
  DecodeOptions(**flags).check()  # before anything is read
  _check_output(args.output)
  records = [R.Record("--prompt", {R.TEXT: args.prompt})] if args.prompt is not None else _records(args.input)
  loaded = loading.load(args.checkpoint, args.tokenizer, need_tokenizer=args.prompt is not None)
  infer.check_generates(loaded)
  options = DecodeOptions(**flags, eos_id=infer.default_eos(loaded) if args.eos_id is None else args.eos_id,
                          bos_id=parse_bos(args.bos_id, infer.default_bos(loaded), loaded.cfg.vocab_size))
  rows = infer.infer(loaded, records, options, batch_size=args.batch_size, seed=args.seed)
  if args.prompt is not None:
    print(rows[0][R.TEXT])
  else:
    _emit(rows, args.output)
  return 0


def run_score(args) -> int:
  from t5x_like.decoding import infer, loading, score
  _check_output(args.output)
  records = _records(args.input)
  loaded = loading.load(args.checkpoint, args.tokenizer)
  rows = score.score(loaded, records, bos_id=parse_bos(args.bos_id, infer.default_bos(loaded), loaded.cfg.vocab_size),
                     batch_size=args.batch_size)
  _emit(rows, args.output)
  return 0

