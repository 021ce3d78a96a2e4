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
  t5x-like eval --workdir /tmp/tiny_gpt --all-checkpoints
  t5x-like tokenizer train --input 'data/*.txt' --vocab-size 8000 --output tok/spm.model
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
  tr.add_argument("--dry-run", nargs="?", const="plan", default="", choices=["plan", "compile"],
                  help="print the parameter sharding table and per-device memory and exit; --dry-run=compile also "
                       "compiles the step and says whether it fits (XLA's memory, FLOPs, collectives)")
  tr.add_argument("--topology", default="", help="with --dry-run=compile: compile for this TPU slice from any "
                                                  "machine, e.g. v5p-128, v5e-256, v5p:4x4x4 (needs the [tpu] extra)")
  _add_runtime_flags(tr)

  ev = sub.add_parser("eval", help="evaluate a run's checkpoints (loss, perplexity, token accuracy)",
                      description="Evaluates the latest checkpoint of --workdir (or --checkpoint PATH, or with "
                                  "--all-checkpoints every kept step) on a split, and writes one row per step to "
                                  "WORKDIR/eval/SPLIT/metrics.jsonl and TensorBoard.",
                      epilog=USAGE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
  ev.add_argument("--workdir", required=True, help="the training run's workdir (its checkpoints and data)")
  ev.add_argument("--config", default="", help="config file; default: the run's own WORKDIR/config.json")
  ev.add_argument("--checkpoint", default="", help="a step directory (or checkpoints directory) to evaluate")
  ev.add_argument("--all-checkpoints", action="store_true", help="every kept step, oldest first")
  ev.add_argument("--split", default="eval", choices=["eval", "train"])
  ev.add_argument("--batches", type=int, default=0, help="eval batches (default: train.eval_batches)")
  _add_runtime_flags(ev)

  la = sub.add_parser("launch", help="start a training run on this machine, a SLURM cluster or a TPU slice",
                      description="Runs `t5x-like train --config ... --workdir ... [overrides]` where the hardware is; "
                                  "rerun the same launch to resume. --dry-run prints the commands per host.")
  la.add_argument("where", choices=["local", "slurm", "tpu"])
  la.add_argument("--config", required=True)
  la.add_argument("--workdir", required=True)
  la.add_argument("--dry-run", action="store_true", help="print the commands and environment, start nothing")
  _add_launch_flags(la)

  sw = sub.add_parser("sweep", help="expand a sweep file into runs and launch them",
                      description="A sweep file (configs/sweeps/) names a base config and a grid or list of "
                                  "overrides; each run gets a readable name and its own workdir. Finished runs "
                                  "are skipped, unfinished ones resume.")
  sw.add_argument("file")
  sw.add_argument("--launcher", default="local", choices=["local", "slurm", "tpu"])
  sw.add_argument("--parallel", type=int, default=1, help="local: runs at a time")
  sw.add_argument("--dry-run", action="store_true")
  _add_launch_flags(sw)

  rn = sub.add_parser("runs", help="a table of every run under a directory, and a loss plot")
  rn.add_argument("root")
  rn.add_argument("--sort", default="name", help="a column; prefix - for descending, e.g. --sort=-tokens_per_s")
  rn.add_argument("--filter", action="append", default=[], help="KEY=VALUE, KEY~TEXT, KEY<NUM or KEY>NUM")
  rn.add_argument("--plot", default="", help="PNG path: train and eval loss against tokens for every run")

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

  cv = sub.add_parser("convert", help="import/export Hugging Face weights (safetensors): gpt2, bert, t5, "
                                     "llama, mistral, qwen2",
                      description="--from-hf DIR writes OUTPUT/0 (params + model config, an Orbax checkpoint); "
                                  "--to-hf CKPT writes a HF directory from a checkpoint step dir (OUTPUT).")
  src = cv.add_mutually_exclusive_group(required=True)
  src.add_argument("--from-hf", default="", help="a local HF model directory (config.json + *.safetensors)")
  src.add_argument("--to-hf", default="", help="a checkpoint step directory, e.g. WORKDIR/checkpoints/350")
  cv.add_argument("--family", default=None,
                  help="HF model type: gpt2, bert, t5, llama, mistral or qwen2. --from-hf: config.json's "
                       "model_type when omitted; --to-hf: the type the step was imported from, else the one "
                       "its architecture fits")
  cv.add_argument("--shard-size", default="",
                  help="--to-hf: the largest safetensors file, in bytes or with a unit (500MB, 2GB, 1GiB); "
                       "default 5GB")
  cv.add_argument("--output", required=True)

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


def _add_launch_flags(p: argparse.ArgumentParser) -> None:
  g = p.add_argument_group("launcher options")
  g.add_argument("--processes", type=int, default=1, help="local: processes on this machine")
  g.add_argument("--devices", type=int, default=4, help="local: simulated CPU devices per process")
  g.add_argument("--nodes", type=int, default=1, help="slurm: nodes (one process each)")
  g.add_argument("--gpus-per-node", type=int, default=8)
  g.add_argument("--time", default="24:00:00", help="slurm: time limit")
  g.add_argument("--partition", default="")
  g.add_argument("--account", default="")
  g.add_argument("--setup", default="", help="slurm: a shell line run before training (modules, venv)")
  g.add_argument("--tpu", default="", help="tpu: the TPU VM slice name")
  g.add_argument("--zone", default="")
  g.add_argument("--project", default="")
  g.add_argument("--install", action="store_true", help="tpu: copy this checkout to every worker and install it first")


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
  commands = {"train": _train, "eval": _eval, "show": _data_show, "build": _data_build, "tokenizer": _tokenizer,
              "convert": _convert, "launch": _launch, "sweep": _sweep, "runs": _runs}
  command = args.data_command if args.command == "data" else args.command
  try:
    if rest and command not in ("train", "eval", "show", "launch"):
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
  if args.topology and args.dry_run != "compile":
    raise config_lib.ConfigError("--topology is for the fit check: add --dry-run=compile")
  if args.dry_run == "compile":
    from t5x_like.train.fit import fit_check
    fit_check(cfg, args.topology)
    return 0
  runtime.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
  from t5x_like.train.loop import run
  run(cfg, args.workdir, dry_run=bool(args.dry_run))
  return 0


def _eval(args, rest) -> int:
  import json

  from t5x_like import config as config_lib
  from t5x_like import runtime
  if args.config:
    cfg = config_lib.build_config(args.config, rest)
  else:
    path = os.path.join(args.workdir, "config.json")
    if not os.path.exists(path):
      raise config_lib.ConfigError(f"{path} not found; pass the run's --config")
    cfg = config_lib.from_dict(json.load(open(path)))
    for key, value in config_lib.parse_overrides(rest):
      config_lib.apply_override(cfg, key, value)
    cfg = config_lib.validate(cfg)
  runtime.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
  from t5x_like.train.eval_run import run_eval
  run_eval(cfg, args.workdir, checkpoint_path=args.checkpoint, all_checkpoints=args.all_checkpoints,
           split=args.split, batches=args.batches)
  return 0


def _launch(args, rest) -> int:
  from t5x_like import config as config_lib
  from t5x_like import launch
  config_lib.build_config(args.config, rest)  # a bad key fails here, before anything starts
  job = launch.Job(args.config, args.workdir, list(rest), name=os.path.basename(os.path.abspath(args.workdir)))
  if args.where == "local":
    return launch.launch_local(job, args.processes, args.devices, dry_run=args.dry_run)
  if args.where == "slurm":
    return launch.launch_slurm(job, args.nodes, args.gpus_per_node, dry_run=args.dry_run, time_limit=args.time,
                               partition=args.partition, account=args.account, setup=args.setup)
  return launch.launch_tpu(job, args.tpu, args.zone, dry_run=args.dry_run, project=args.project,
                           install=args.install)


def _sweep(args, rest) -> int:
  from t5x_like import sweep
  spec = sweep.load_sweep(args.file)
  runs = sweep.expand(spec)  # every run's config is checked before anything launches
  if args.launcher == "local":
    return 1 if sweep.launch_local(spec, runs, args.parallel, dry_run=args.dry_run) else 0
  if args.launcher == "slurm":
    return sweep.launch_slurm_array(spec, runs, args.nodes, args.gpus_per_node, dry_run=args.dry_run,
                                    time_limit=args.time, partition=args.partition, account=args.account,
                                    setup=args.setup)
  return sweep.launch_tpu_runs(spec, runs, args.tpu, args.zone, dry_run=args.dry_run, project=args.project,
                               install=args.install)


def _runs(args, rest) -> int:
  from t5x_like.runs import runs_table
  runs_table(args.root, sort=args.sort, filters=args.filter, plot_path=args.plot)
  return 0


def _tokenizer(args, rest) -> int:
  from t5x_like.data.tokenizer import train_sentencepiece
  symbols = tuple(s for s in args.user_symbols.split(",") if s)
  path = train_sentencepiece(args.input, args.vocab_size, args.output, model_type=args.model_type,
                             byte_fallback=not args.no_byte_fallback, user_defined_symbols=symbols,
                             max_bytes=args.max_bytes, seed=args.seed)
  print(f"wrote {path}")
  return 0


_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _shard_bytes(text: str) -> int:
  """`--shard-size`: plain bytes or a number with a unit (decimal KB/MB/GB/TB as HF counts
  them, binary KiB/MiB/GiB/TiB)."""
  from t5x_like.errors import ConfigError
  number = text.strip().lower().rstrip("bkmgtpi")
  unit = text.strip().lower()[len(number):].strip() or "b"
  try:
    size = float(number) * _SIZE_UNITS[unit]
  except (ValueError, KeyError):
    size = 0
  if not size >= 1 or size == float("inf"):
    raise ConfigError(f"--shard-size {text!r} is not a size; give bytes (2000000000) or a positive number "
                      "with a unit: KB, MB, GB, TB or KiB, MiB, GiB, TiB (e.g. 2GB)")
  return int(size)


def _convert(args, rest) -> int:
  from t5x_like import checkpoint, interop
  from t5x_like import config as config_lib
  from t5x_like.checkpoint import layout
  from t5x_like.errors import ConfigError
  if args.family is not None and args.family not in interop.HF_TYPES:
    raise ConfigError(f"--family {args.family!r} is not a supported HF model type; use one of "
                      f"{', '.join(interop.HF_TYPES)}")
  if args.from_hf:
    if args.shard_size:
      raise ConfigError("--shard-size applies to --to-hf only; drop it when importing with --from-hf")
    cfg, params = interop.load_hf(args.from_hf, args.family)
    model = config_lib.to_dict(config_lib.Config(model=cfg))["model"]
    hf = interop.source_info(args.from_hf)  # model type and token ids, for --to-hf
    out = checkpoint.write_params(args.output, params, model, source=args.from_hf, extra={"hf": hf})
    print(f"wrote {out} ({hf['model_type']} as our {cfg.family}; use it with "
          f"--config.checkpoint.init_from={out})")
    return 0
  shard = _shard_bytes(args.shard_size) if args.shard_size else 5 * 10**9
  params, model = checkpoint.read_params(args.to_hf)
  hf = layout.read_meta(args.to_hf).get("hf") or {}
  cfg = config_lib.from_dict({"model": model}).model
  family = args.family or hf.get("model_type")
  files = interop.export_hf(params, cfg, args.output, max_shard_bytes=shard, family=family,
                            token_ids=hf.get("token_ids"))
  print(f"wrote {len(files)} files to {args.output} ({interop.export_type(cfg, family)}): {', '.join(files)}")
  return 0


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
