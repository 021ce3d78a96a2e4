"""Command-line entry points. Parsing only: each subcommand calls into the package."""

from __future__ import annotations

import argparse
import errno
import os
import sys

USAGE_EPILOG = """overrides: any config field, e.g. --config.train.steps=200 --config.optimizer.learning_rate=1e-3
examples:
  t5x-like train --config configs/tiny/gpt.py --workdir /tmp/tiny_gpt
  t5x-like train --config configs/tiny/gpt.py --workdir /tmp/tiny_gpt --dry-run
  t5x-like tokenizer train --input 'data/*.txt' --vocab-size 8000 --output tok/spm.model
  t5x-like infer --checkpoint /tmp/tiny_gpt/checkpoints/350 --prompt "17 + 25 ="
  t5x-like score --checkpoint /tmp/tiny_gpt/checkpoints/350 --input texts.jsonl
"""


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="t5x-like", description="Pretrain and fine-tune transformer LMs with JAX.",
                              epilog=USAGE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = p.add_subparsers(dest="command", required=True)

  tr = sub.add_parser("train", help="train (or resume) a model from a config file",
                      description="Train a model; rerunning with the same --workdir resumes from the latest checkpoint. "
                                  "Extra --config.a.b=value arguments override config fields.",
                      epilog=USAGE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
  tr.add_argument("--config", required=True, help="Python config file whose get_config() returns a Config")
  tr.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl, TensorBoard events and config.json go here")
  tr.add_argument("--dry-run", action="store_true", help="print the parameter sharding table and exit without training")
  _add_runtime_flags(tr)

  tok = sub.add_parser("tokenizer", help="SentencePiece tokenizer tools")
  toksub = tok.add_subparsers(dest="tok_command", required=True)
  tt = toksub.add_parser("train", help="train a SentencePiece model on text files")
  tt.add_argument("--input", required=True, help="glob of text files, one document per line")
  tt.add_argument("--vocab-size", type=int, required=True)
  tt.add_argument("--output", required=True, help="path of the .model file to write (a .json card goes beside it)")
  tt.add_argument("--model-type", default="unigram", choices=["unigram", "bpe"])
  tt.add_argument("--max-bytes", type=int, default=100_000_000, help="bytes of text sampled for training")
  tt.add_argument("--no-byte-fallback", action="store_true")
  tt.add_argument("--user-symbols", default="", help="comma-separated user-defined special tokens")
  tt.add_argument("--seed", type=int, default=0)

  cv = sub.add_parser("convert", help="import/export Hugging Face GPT-2, BERT and T5 weights (safetensors)",
                      description="--from-hf DIR writes OUTPUT/0 (params + model config, an Orbax checkpoint); "
                                  "--to-hf CKPT writes a HF directory from a checkpoint step dir (OUTPUT).")
  src = cv.add_mutually_exclusive_group(required=True)
  src.add_argument("--from-hf", default="", help="a local HF model directory (config.json + *.safetensors)")
  src.add_argument("--to-hf", default="", help="a checkpoint step directory, e.g. WORKDIR/checkpoints/350")
  cv.add_argument("--family", default=None, choices=["decoder", "encoder", "encoder_decoder"],
                  help="our family; inferred from config.json when omitted")
  cv.add_argument("--output", required=True)

  inf = sub.add_parser("infer", help="generate from a checkpoint: greedy, sampling or beam search",
                       description="Continues prompts (decoder) or decodes from inputs (encoder-decoder) with a "
                                   "KV cache. JSONL records hold \"text\" (needs a tokenizer) or \"ids\"; output "
                                   "records hold the prompt record, the generated \"ids\" and \"text\". "
                                   "See docs/generation.md.")
  inf.add_argument("--checkpoint", required=True, help="a step directory (or a checkpoints directory: its latest)")
  src = inf.add_mutually_exclusive_group(required=True)
  src.add_argument("--prompt", default=None, help="one prompt as text; prints the generated text")
  src.add_argument("--input", default="", help="JSONL file of prompt records")
  inf.add_argument("--output", default="", help="JSONL file to write (default: print the records)")
  inf.add_argument("--tokenizer", default="", help="SentencePiece .model (default: the training workdir's)")
  inf.add_argument("--max-new-tokens", type=int, default=32)
  inf.add_argument("--temperature", type=float, default=0.0, help="0: greedy; > 0: sampling")
  inf.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0: all)")
  inf.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
  inf.add_argument("--beam-size", type=int, default=1, help="> 1: beam search")
  inf.add_argument("--length-penalty", type=float, default=0.6,
                   help="beam search: GNMT alpha, scores are log P / ((5 + length) / 6) ** alpha")
  inf.add_argument("--seed", type=int, default=0, help="sampling seed")
  inf.add_argument("--batch-size", type=int, default=8, help="rows generated together")
  _add_token_flags(inf)
  inf.add_argument("--eos-id", type=int, default=None,
                   help="stop a row at this id (default: the tokenizer's EOS, else 1; -1: never)")

  sc = sub.add_parser("score", help="log-likelihood of sequences under a checkpoint",
                      description="Records hold \"text\" or \"ids\" (decoder), or \"inputs\"/\"input_ids\" and "
                                  "\"targets\"/\"target_ids\" (encoder-decoder); each gets \"score\" (nats) "
                                  "and \"tokens\" (how many were scored).")
  sc.add_argument("--checkpoint", required=True, help="a step directory (or a checkpoints directory: its latest)")
  sc.add_argument("--input", required=True, help="JSONL file of records")
  sc.add_argument("--output", default="", help="JSONL file to write (default: print the records)")
  sc.add_argument("--tokenizer", default="", help="SentencePiece .model (default: the training workdir's)")
  sc.add_argument("--batch-size", type=int, default=8)
  _add_token_flags(sc)

  ds = sub.add_parser("data", help="data tools")
  dsub = ds.add_subparsers(dest="data_command", required=True)
  show = dsub.add_parser("show", help="print decoded examples as the model will see them")
  show.add_argument("--config", required=True)
  show.add_argument("--workdir", default="", help="where the built-in corpus/tokenizer live (default: a temp dir)")
  show.add_argument("--num", type=int, default=3)
  build = dsub.add_parser("build", help="turn text or JSONL files into a TFDS dataset with train/validation splits",
                          description="Writes DATA_DIR/NAME/VERSION (TFRecord shards + TFDS metadata), readable offline "
                                      "with tfds.load(NAME, data_dir=DATA_DIR) and data.source=tfds.")
  build.add_argument("--input", required=True, help="glob of text files (one document per line) or JSONL files")
  build.add_argument("--name", required=True, help="snake_case dataset name, optionally NAME:X.Y.Z (default 1.0.0)")
  build.add_argument("--data-dir", required=True, help="TFDS data_dir to write into (then data.tfds.data_dir)")
  build.add_argument("--validation-fraction", type=float, default=0.05, help="documents held out, spread evenly")
  build.add_argument("--field", default="text", help="JSONL field to read; also the feature name (data.tfds.text_key)")
  build.add_argument("--format", default="auto", choices=["auto", "text", "jsonl"],
                     help="auto: jsonl when every file ends in .jsonl or .json")
  build.add_argument("--skip-bad-lines", action="store_true",
                     help="skip and count non-UTF-8 lines and JSONL lines without the field instead of stopping")
  return p


def _add_token_flags(p: argparse.ArgumentParser) -> None:
  p.add_argument("--bos-id", default="auto",
                 help="id read before each sequence: auto (0 for models trained here and T5; nothing for "
                      "GPT-2 converted from Hugging Face), none, or an id")


def _add_runtime_flags(p: argparse.ArgumentParser) -> None:
  g = p.add_argument_group("multi-host and devices")
  g.add_argument("--coordinator", default="", help="HOST:PORT of process 0 (multi-host without auto-detection)")
  g.add_argument("--num-processes", type=int, default=0)
  g.add_argument("--process-id", type=int, default=-1)
  g.add_argument("--cpu-devices", type=int, default=0, help="simulate N devices per process on the CPU")


def _setup_env(args) -> None:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  n = getattr(args, "cpu_devices", 0)
  if n:
    import jax
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", n)


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  args, rest = _parser().parse_known_args(argv)
  _setup_env(args)
  from t5x_like.errors import ConfigError, UserError
  commands = {"train": _train, "show": _data_show, "build": _data_build, "tokenizer": _tokenizer,
              "convert": _convert, "infer": _infer, "score": _score}
  command = args.data_command if args.command == "data" else args.command
  try:
    if rest and command not in ("train", "show"):
      raise ConfigError(f"unexpected arguments: {' '.join(rest)}")
    return commands[command](args, rest)
  except (UserError, FileNotFoundError) as e:
    # Errors the user can fix are one line; anything else is a bug and keeps its traceback.
    print(f"error: {e}", file=sys.stderr)
    return 2
  except OSError as e:
    if e.errno not in _USER_OS_ERRORS:
      raise
    print(f"error: {e.filename or 'a file'}: {e.strerror} (free space, fix permissions, or choose another "
          "path, then rerun the same command)", file=sys.stderr)
    return 2


# A full disk, a read-only or forbidden path: the environment, not a bug.
_USER_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _train(args, rest) -> int:
  from t5x_like import config as config_lib
  from t5x_like import runtime
  cfg = config_lib.build_config(args.config, rest)
  runtime.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
  from t5x_like.train.loop import run
  run(cfg, args.workdir, dry_run=args.dry_run)
  return 0


def _tokenizer(args, rest) -> int:
  from t5x_like.data.tokenizer import train_sentencepiece
  symbols = tuple(s for s in args.user_symbols.split(",") if s)
  path = train_sentencepiece(args.input, args.vocab_size, args.output, model_type=args.model_type,
                             byte_fallback=not args.no_byte_fallback, user_defined_symbols=symbols,
                             max_bytes=args.max_bytes, seed=args.seed)
  print(f"wrote {path}")
  return 0


def _convert(args, rest) -> int:
  from t5x_like import checkpoint, interop
  from t5x_like import config as config_lib
  if args.from_hf:
    cfg, params = interop.load_hf(args.from_hf, args.family)
    model = config_lib.to_dict(config_lib.Config(model=cfg))["model"]
    out = checkpoint.write_params(args.output, params, model, source=args.from_hf)
    print(f"wrote {out} ({cfg.family}; use it with --config.checkpoint.init_from={out})")
    return 0
  params, model = checkpoint.read_params(args.to_hf)
  files = interop.export_hf(params, config_lib.from_dict({"model": model}).model, args.output)
  print(f"wrote {len(files)} files to {args.output}")
  return 0


def _infer(args, rest) -> int:
  from t5x_like.decoding.commands import run_infer
  return run_infer(args)


def _score(args, rest) -> int:
  from t5x_like.decoding.commands import run_score
  return run_score(args)


def _data_show(args, overrides=()) -> int:
  import tempfile

  from t5x_like import config as config_lib
  from t5x_like.data import pipeline
  from t5x_like.data.objectives import sentinel_base
  from t5x_like.data.prepare import prepare_data
  from t5x_like.data.readers import data_errors
  from t5x_like.data.tokenizer import Tokenizer
  from t5x_like.models import family_class
  cfg = config_lib.build_config(args.config, list(overrides))
  files = prepare_data(cfg, args.workdir or tempfile.mkdtemp(prefix="t5x_like_show_"))
  tok = Tokenizer(files.tokenizer)
  base = sentinel_base(tok, cfg.data)
  contract = family_class(cfg.model.family).contract

  def piece(t: int) -> str:  # ids past the tokenizer are sentinels (or the MLM mask)
    return tok.decode([t]) if t < tok.vocab_size else f"<extra_id_{base - 1 - t}>"

  ds = pipeline.make_dataset(cfg.data, files=files.train, tokenizer_path=files.tokenizer, batch_size=1,
                             shuffle=False, repeat=False, split="train")
  tokens = {f.name for f in contract.features if f.role in ("inputs", "targets")}
  with data_errors():
    for i, batch in enumerate(ds.take(args.num)):
      print(f"--- example {i}")
      for k, v in batch.items():
        row = v.numpy()[0]
        if k in tokens:
          segs = batch[contract.side_of(k).segment_ids].numpy()[0]
          pieces = [piece(int(t)) if segs[j] else "<pad>" for j, t in enumerate(row)]
          print(f"{k}: {' '.join(repr(p) for p in pieces[:64])}{' ...' if len(pieces) > 64 else ''}")
        else:
          print(f"{k}: {row[:64].tolist()}{' ...' if len(row) > 64 else ''}")
  for name, n in pipeline.skipped_lines().items():
    print(f"data stats: {n} bad records skipped so far in {name} (data.skip_bad_lines=true)")
  return 0


def _data_build(args, rest) -> int:
  from t5x_like.data.build import build_tfds
  out = build_tfds(args.input, args.name, args.data_dir, validation_fraction=args.validation_fraction,
                   field=args.field, fmt=args.format, skip_bad_lines=args.skip_bad_lines)
  sizes = ", ".join(f"{k} {v}" for k, v in out["splits"].items())
  skipped = f"; skipped {out['skipped_lines']} bad lines" if args.skip_bad_lines else ""
  print(f"wrote {out['path']} ({out['format']}: {sizes} documents{skipped})\n"
        f"use: --config.data.source=tfds --config.data.tfds.name={out['name']}:{out['version']} "
        f"--config.data.tfds.data_dir={args.data_dir} --config.data.tfds.text_key={args.field}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
