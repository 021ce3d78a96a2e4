"""Command-line entry points: each subcommand is a thin handler that calls into the package
(the flags are in cli_args.py)."""

from __future__ import annotations

import errno
import os
import sys
import traceback

from t5x_like.cli_args import byte_size, parser


def _setup_env(args) -> None:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  n = getattr(args, "cpu_devices", 0)
  if n:
    import jax
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", n)


def main(argv: list[str] | None = None) -> int:
  if argv is not None:  # a call from Python
    return _main(argv)
  from t5x_like.errors import UserError
  from t5x_like.host_memory import reexec_with_host_heap
  try:
    reexec_with_host_heap()
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  try:
    code = _main(sys.argv[1:])
  except BaseException:
    if not _distributed():
      raise
    traceback.print_exc()
    code = 1
  if code and _distributed():
    _leave_now(code)
  return code


def _distributed() -> bool:
  runtime = sys.modules.get("t5x_like.runtime")
  return bool(runtime and runtime.DISTRIBUTED)


def _leave_now(code: int) -> None:
  """A process of a multi-process run that stops on an error exits at once. At a normal exit
  jax.distributed's shutdown waits for every process at a barrier, and peers still training
  (or waiting for this one in a collective) would hold it there for minutes; they learn of
  the exit from their broken connections, and `t5x-like launch` or `srun
  --kill-on-bad-exit` stops them."""
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)


def _main(argv: list[str]) -> int:
  args, rest = parser().parse_known_args(argv)
  _setup_env(args)
  from t5x_like.errors import ConfigError, UserError
  commands = {"train": _train, "eval": _eval, "show": _data_show, "build": _data_build, "tokenizer": _tokenizer,
              "convert": _convert, "infer": _infer, "score": _score, "launch": _launch, "sweep": _sweep, "runs": _runs,
              "bench": _bench, "clean": _data_clean, "stats": _data_stats}
  command = args.data_command if args.command == "data" else args.command
  try:
    if rest and command not in ("train", "eval", "show", "launch", "bench", "clean"):
      raise ConfigError(f"unexpected arguments: {' '.join(rest)}")
    return commands[command](args, rest)
  except (UserError, FileNotFoundError) as e:
    # Errors the user can fix are one line; anything else is a bug and keeps its traceback.
    print(f"error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:  # (training handles SIGINT itself: it saves and exits 0)
    print(f"interrupted: {command} stopped; rerun it to start again", file=sys.stderr)
    return 130
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
  from t5x_like.train import guards
  from t5x_like.train.loop import run
  abandoned = len(guards.ABANDONED)
  run(cfg, args.workdir, dry_run=bool(args.dry_run))
  if len(guards.ABANDONED) > abandoned:  # stopped in start-up work still running in a thread
    _leave_now(0)
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
  if not args.config and not any(a.startswith("--config.mesh.") for a in rest):
    cfg = _mesh_for_these_devices(cfg)
  from t5x_like.train.eval_run import run_eval
  run_eval(cfg, args.workdir, checkpoint_path=args.checkpoint, all_checkpoints=args.all_checkpoints,
           split=args.split, batches=args.batches)
  return 0


def _mesh_for_these_devices(cfg):
  """The run's own config may name a mesh of other devices (trained on 8, evaluated on 1):
  when it does not fit the devices here, evaluation shards the batch over all of them."""
  import dataclasses

  import jax

  from t5x_like import runtime
  from t5x_like.config import ConfigError
  try:
    runtime.make_mesh(cfg.mesh)
    return cfg
  except ConfigError:
    pass
  m = cfg.mesh
  print(f"[t5x_like] the run's mesh (data={m.data}, fsdp={m.fsdp}, tensor={m.tensor}) does not fit the "
        f"{jax.device_count()} device(s) here: evaluating with data={jax.device_count()}")
  return dataclasses.replace(cfg, mesh=dataclasses.replace(m, data=-1, fsdp=1, tensor=1, dcn_data=1, dcn_fsdp=1,
                                                           dcn_tensor=1))


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
  from t5x_like.errors import UserError
  spec = sweep.load_sweep(args.file)
  runs = sweep.expand(spec)  # every run's config is checked before anything launches
  if args.launcher == "local":
    if args.processes not in (None, 1):
      raise UserError("sweep --launcher local runs each run as one process on this machine; --processes is for "
                      "`t5x-like launch local` (a sweep of multi-process runs goes through --launcher slurm or tpu)")
    return 1 if sweep.launch_local(spec, runs, args.parallel, dry_run=args.dry_run, devices=args.devices) else 0
  if args.processes is not None or args.devices is not None:
    raise UserError(f"--processes and --devices are for local launches; --launcher {args.launcher} takes the "
                    "hardware from the allocation")
  if args.launcher == "slurm":
    return sweep.launch_slurm_array(spec, runs, args.nodes, args.gpus_per_node, dry_run=args.dry_run,
                                    time_limit=args.time, partition=args.partition, account=args.account,
                                    setup=args.setup)
  return sweep.launch_tpu_runs(spec, runs, args.tpu, args.zone, dry_run=args.dry_run, project=args.project,
                               install=args.install)


def _bench(args, rest) -> int:
  from t5x_like.train.bench import bench
  bench(args, rest)
  return 0


def _runs(args, rest) -> int:
  from t5x_like.runs import runs_table
  runs_table(args.root, sort=args.sort, filters=args.filter, plot_path=args.plot)
  return 0


def _tokenizer(args, rest) -> int:
  from t5x_like.data.tokenizer import train_sentencepiece
  from t5x_like.errors import DataError
  if os.path.isfile(args.output):
    # Runs and checkpoints name the model by path: a new vocabulary under them would be silent.
    raise DataError(f"--output {args.output} already exists; delete it (if no run uses it) or choose another path")
  symbols = tuple(s for s in args.user_symbols.split(",") if s)
  path = train_sentencepiece(args.input, args.vocab_size, args.output, model_type=args.model_type,
                             byte_fallback=not args.no_byte_fallback, user_defined_symbols=symbols,
                             max_bytes=args.max_bytes, seed=args.seed, field=args.field,
                             character_coverage=args.character_coverage)
  import json

  from t5x_like.data.tokenizer import card_path_for
  for skipped in json.load(open(card_path_for(path))).get("skipped_files", []):
    print(f"skipped file: {skipped}")
  print(f"wrote {path}")
  return 0


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
  shard = byte_size(args.shard_size) if args.shard_size else 5 * 10**9
  params, model = checkpoint.read_params(args.to_hf)
  hf = layout.read_meta(args.to_hf).get("hf") or {}
  cfg = config_lib.from_dict({"model": model}).model
  family = args.family or hf.get("model_type")
  files = interop.export_hf(params, cfg, args.output, max_shard_bytes=shard, family=family,
                            token_ids=hf.get("token_ids"))
  print(f"wrote {len(files)} files to {args.output} ({interop.export_type(cfg, family)}): {', '.join(files)}")
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
  from t5x_like.data.prepare import prepare_data
  from t5x_like.data.readers import data_errors
  from t5x_like.data.tokenizer import Tokenizer
  from t5x_like.models import family_class
  cfg = config_lib.build_config(args.config, list(overrides))
  files = prepare_data(cfg, args.workdir or tempfile.mkdtemp(prefix="t5x_like_show_"))
  tok = Tokenizer(files.tokenizer, cfg.data.tokenizer.extra_ids)  # sentinels (and the MLM mask) by name
  contract = family_class(cfg.model.family).contract

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
          pieces = [tok.decode([int(t)]) if segs[j] else "<pad>" for j, t in enumerate(row)]
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


def _data_clean(args, rest) -> int:
  import dataclasses

  from t5x_like.data.clean import options as clean_options
  from t5x_like.data.clean import report
  from t5x_like.data.clean.run import clean
  opts = clean_options.CleanOptions(fmt=args.format, field=args.field, text_docs=args.text_docs,
                                    bad_utf8=args.bad_utf8, jaccard=args.jaccard, pii=args.pii,
                                    tfrecord=args.tfrecord,
                                    languages=tuple(x for x in args.languages.split(",") if x))
  off = {name: False for name in ("normalize", "html", "urls", "emails", "symbol_runs", "exact_dedup", "near_dedup")
         if getattr(args, f"no_{name}")}
  opts = dataclasses.replace(opts, **off)
  if args.no_quality:
    opts = clean_options.without_quality(opts)
  opts = clean_options.with_settings(opts, args.set)
  rep = clean(args.input, args.output, opts, runner=args.runner, pipeline_args=rest, workers=args.workers,
              data_dir=args.data_dir, split=args.split)
  print(report.table(rep))
  print(f"wrote {len(rep['shards'])} shards and report.json to {args.output} ({rep['seconds']:.1f} s)")
  return 0


def _data_stats(args, rest) -> int:
  from t5x_like.data.clean.stats import corpus_stats, print_stats
  stats = corpus_stats(args.input, fmt=args.format, field=args.field, tokenizer=args.tokenizer,
                       plot=args.plot, json_path=args.json, top=args.top)
  print_stats(stats)
  return 0


if __name__ == "__main__":
  sys.exit(main())
