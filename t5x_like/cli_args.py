"""The command line's grammar: every subcommand and flag of `t5x-like` (argparse). The
handlers are in cli.py."""

from __future__ import annotations

import argparse

USAGE_EPILOG = """overrides: any config field, e.g. --config.train.steps=200 --config.optimizer.learning_rate=1e-3
examples:
  t5x-like train --config configs/tiny/gpt.py --workdir /tmp/tiny_gpt
  t5x-like train --config configs/tiny/gpt.py --workdir /tmp/tiny_gpt --dry-run
  t5x-like eval --workdir /tmp/tiny_gpt --all-checkpoints
  t5x-like tokenizer train --input 'data/*.txt' --vocab-size 8000 --output tok/spm.model
  t5x-like infer --checkpoint /tmp/tiny_gpt/checkpoints --prompt "17 + 25 ="
  t5x-like score --checkpoint /tmp/tiny_gpt/checkpoints --input texts.jsonl
  t5x-like bench --preset gpt:gpt2_small --batch 16 --seq 1024 --dtype bfloat16
"""


SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def coverage(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    value = -1.0
  if not 0.98 <= value <= 1.0:  # SentencePiece's own bounds
    raise argparse.ArgumentTypeError(f"{text!r} is not a share between 0.98 and 1.0 (e.g. 0.9995)")
  return value


def byte_size(text: str) -> int:
  """`--shard-size`: plain bytes or a number with a unit (decimal KB/MB/GB/TB as HF counts
  them, binary KiB/MiB/GiB/TiB)."""
  from t5x_like.errors import ConfigError
  number = text.strip().lower().rstrip("bkmgtpi")
  unit = text.strip().lower()[len(number):].strip() or "b"
  try:
    size = float(number) * SIZE_UNITS[unit]
  except (ValueError, KeyError):
    size = 0
  if not size >= 1 or size == float("inf"):
    raise ConfigError(f"--shard-size {text!r} is not a size; give bytes (2000000000) or a positive number "
                      "with a unit: KB, MB, GB, TB or KiB, MiB, GiB, TiB (e.g. 2GB)")
  return int(size)


def positive(text: str) -> int:
  """An argparse type: a whole number of at least 1 (0 is no way to ask for a default)."""
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
  return value


def parser() -> argparse.ArgumentParser:
  about = ("Pretrain transformer LMs with JAX, continue from checkpoints or Hugging Face imports, "
           "evaluate and generate.")
  p = argparse.ArgumentParser(prog="t5x-like", description=about,
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
  ev.add_argument("--batches", type=positive, default=0, help="eval batches (default: train.eval_batches)")
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
  sw.add_argument("--parallel", type=positive, default=1, help="local: runs at a time")
  sw.add_argument("--dry-run", action="store_true")
  _add_launch_flags(sw)
  sw.set_defaults(processes=None, devices=None)  # local sweeps: one process per run; --devices is opt-in

  rn = sub.add_parser("runs", help="a table of every run under a directory, and a loss plot")
  rn.add_argument("root")
  rn.add_argument("--sort", default="name", help="a column; prefix - for descending, e.g. --sort=-tokens_per_s")
  rn.add_argument("--filter", action="append", default=[], help="KEY=VALUE, KEY~TEXT, KEY<NUM or KEY>NUM")
  rn.add_argument("--plot", default="", help="PNG path: train and eval loss against tokens for every run")

  tok = sub.add_parser("tokenizer", help="SentencePiece tokenizer tools")
  toksub = tok.add_subparsers(dest="tok_command", required=True)
  tt = toksub.add_parser("train", help="train a SentencePiece model on text files")
  tt.add_argument("--input", required=True, help="glob of text files, one document per line, or of JSONL files "
                                                 "(.jsonl/.json: their --field, e.g. `data clean` output)")
  tt.add_argument("--field", default="text", help="JSONL files: the field holding the text")
  tt.add_argument("--vocab-size", type=positive, required=True)
  tt.add_argument("--output", required=True, help="path of the .model file to write (a .json card goes beside it)")
  tt.add_argument("--model-type", default="unigram", choices=["unigram", "bpe"])
  tt.add_argument("--max-bytes", type=int, default=100_000_000, help="bytes of text sampled for training")
  tt.add_argument("--no-byte-fallback", action="store_true")
  tt.add_argument("--character-coverage", type=coverage, default=1.0,
                  help="share of the text's characters that get pieces of their own (default 1.0, every one); "
                       "0.9995 leaves the rarest to byte pieces, for text of many scripts at a small vocabulary")
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
  inf.add_argument("--max-new-tokens", type=positive, default=32)
  inf.add_argument("--temperature", type=float, default=0.0, help="0: greedy; > 0: sampling")
  inf.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0: all)")
  inf.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
  inf.add_argument("--beam-size", type=positive, default=1, help="> 1: beam search")
  inf.add_argument("--length-penalty", type=float, default=0.6,
                   help="beam search: GNMT alpha, scores are log P / ((5 + length) / 6) ** alpha")
  inf.add_argument("--seed", type=int, default=0, help="sampling seed")
  inf.add_argument("--batch-size", type=positive, default=8, help="rows generated together")
  _add_token_flags(inf)
  inf.add_argument("--eos-id", type=int, default=None,
                   help="stop a row at this id (default: an import's declared EOS, else the tokenizer's, else 1; -1: never)")

  sc = sub.add_parser("score", help="log-likelihood of sequences under a checkpoint",
                      description="Records hold \"text\" or \"ids\" (decoder), or \"inputs\"/\"input_ids\" and "
                                  "\"targets\"/\"target_ids\" (encoder-decoder); each gets \"score\" (nats) "
                                  "and \"tokens\" (how many were scored).")
  sc.add_argument("--checkpoint", required=True, help="a step directory (or a checkpoints directory: its latest)")
  sc.add_argument("--input", required=True, help="JSONL file of records")
  sc.add_argument("--output", default="", help="JSONL file to write (default: print the records)")
  sc.add_argument("--tokenizer", default="", help="SentencePiece .model (default: the training workdir's)")
  sc.add_argument("--batch-size", type=positive, default=8)
  _add_token_flags(sc)

  be = sub.add_parser("bench", help="time the training step of a preset or config on random batches",
                      description="Compiles the train step, runs 2 warm-up steps and --steps timed ones on the "
                                  "family's random full-length rows, and prints compile time, step time, tokens/s, "
                                  "MFU (with the peak it divides by), memory and params, then one JSON line. "
                                  "Extra --config.a.b=value arguments override config fields. See docs/benchmarks.md.",
                      epilog=USAGE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
  src = be.add_mutually_exclusive_group(required=True)
  src.add_argument("--preset", default="", help="MODULE:NAME from configs/models, e.g. gpt:gpt2_small")
  src.add_argument("--config", default="", help="a config file: its model, batch, length and mesh")
  be.add_argument("--batch", type=positive, default=0, help="global batch in rows (default: train.batch_size)")
  be.add_argument("--seq", type=positive, default=0, help="input row length (default: data.seq_len)")
  be.add_argument("--targets", type=int, default=0,
                  help="encoder-decoder target row length (default: derived from --seq as span corruption does)")
  be.add_argument("--dtype", default=None, help="model.dtype: float32, bfloat16 (default: the config's)")
  be.add_argument("--attention", default=None, help="model.attention_impl: auto (chunked on CPU, xla elsewhere), xla, cudnn, chunked (default: the config's)")
  be.add_argument("--remat", default=None, help="model.remat_policy: auto (dots on CPU, none on GPU/TPU), none, full, dots, dots_no_batch")
  be.add_argument("--loss-chunk", type=int, default=None, help="model.loss_chunk: length positions per "
                                                                   "chunk of the loss; 0 = whole logits")
  be.add_argument("--steps", type=positive, default=10, help="timed steps, after 2 warm-up steps")
  be.add_argument("--mesh", default="", help="DATA,FSDP,TENSOR sizes, -1 takes the rest (default: the config's)")
  be.add_argument("--rules", default="", help="mesh.rules: dp, fsdp, fsdp_tp, tp (default: the config's)")
  be.add_argument("--peak-tflops", type=float, default=0.0,
                  help="per-device peak for MFU (default: published by device kind, or measured on CPU)")
  be.add_argument("--compare-torch", action="store_true",
                  help="then time the Hugging Face PyTorch model of the same family and shape (AdamW, "
                       "float32) in a child process and print the speed ratio (needs torch and transformers)")
  be.add_argument("--trace", type=int, default=0, metavar="N",
                  help="after timing, trace N more steps with jax.profiler and print the time per XLA op "
                       "(ops inside the layer scan are marked with its trip count)")
  be.add_argument("--trace-top", type=int, default=20, metavar="K", help="with --trace: list the K slowest ops")
  be.add_argument("--name", default="", help="the row's name in the table and JSON (default: the preset or config)")
  be.add_argument("--json", default="", help="also append the JSON line to this file")
  be.add_argument("--cpu-devices", type=int, default=0, help="simulate N devices on the CPU")

  ds = sub.add_parser("data", help="data tools")
  dsub = ds.add_subparsers(dest="data_command", required=True)
  show = dsub.add_parser("show", help="print decoded examples as the model will see them")
  show.add_argument("--config", required=True)
  show.add_argument("--workdir", default="", help="where the built-in corpus/tokenizer live (default: a temp dir)")
  show.add_argument("--num", type=positive, default=3)
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
  _add_clean_parsers(dsub)
  return p


def _add_clean_parsers(dsub) -> None:
  cl = dsub.add_parser("clean", help="normalise, filter and deduplicate a raw corpus into JSONL shards",
                       description="Reads text/JSONL files (or a TFDS split) and writes OUTPUT/clean-*.jsonl and "
                                   "OUTPUT/report.json (documents and characters each stage removed). Steps: "
                                   "normalise, markup and noise, PII masking (--pii), C4/Gopher quality filters, "
                                   "exact and MinHash near-duplicate removal. Any option: --set NAME=VALUE "
                                   "(t5x_like/data/clean/options.py). With --runner, Apache Beam runs it and "
                                   "unknown flags go to Beam. See docs/data.md.")
  cl.add_argument("--input", required=True, nargs="+", help="globs of text or JSONL files (or TFDS names)")
  cl.add_argument("--output", required=True, help="directory to create: shards and report.json")
  cl.add_argument("--format", default="auto", choices=["auto", "text", "jsonl", "tfds"],
                  help="auto: jsonl for .jsonl/.json files, text for others (a glob matching both is refused)")
  cl.add_argument("--field", default="text", help="JSONL field / TFDS feature with the text (kept in the output)")
  cl.add_argument("--text-docs", default="line", choices=["line", "paragraph", "file"],
                  help="text files: a document per line (as data build), per blank-line-separated paragraph, or per "
                       "file (saved HTML pages)")
  cl.add_argument("--data-dir", default="", help="--format tfds: the TFDS data_dir")
  cl.add_argument("--split", default="train", help="--format tfds: the split to clean")
  cl.add_argument("--bad-utf8", default="drop", choices=["drop", "replace"],
                  help="documents that are not UTF-8: drop them (counted) or replace bad bytes, then clean")
  cl.add_argument("--jaccard", type=float, default=0.7, help="near-duplicate threshold (word 5-gram Jaccard)")
  cl.add_argument("--pii", action="store_true", help="mask e-mail addresses and phone numbers")
  cl.add_argument("--languages", default="", help="keep only these languages, e.g. en,de (needs py3langid)")
  cl.add_argument("--tfrecord", action="store_true", help="also write tf.train.Example shards")
  for step in ("normalize", "html", "urls", "emails", "symbol-runs", "quality", "exact-dedup", "near-dedup"):
    cl.add_argument(f"--no-{step}", action="store_true", help=argparse.SUPPRESS)
  cl.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                  help="any clean option, e.g. min_words=20, max_symbol_ratio=none (off); "
                       "--no-STEP turns off normalize, html, urls, emails, symbol-runs, quality, exact-dedup, "
                       "near-dedup")
  cl.add_argument("--workers", type=int, default=0, help="processes on this machine (default: all cores)")
  cl.add_argument("--runner", default="", help="Beam runner: DirectRunner, DataflowRunner, FlinkRunner, SparkRunner")

  st = dsub.add_parser("stats", help="documents, characters, tokens, lengths, sources, duplicates, languages",
                       description="Prints corpus statistics of text or JSONL files and writes a PNG of the "
                                   "length distributions.")
  st.add_argument("--input", required=True, nargs="+", help="globs of text or JSONL files")
  st.add_argument("--format", default="auto", choices=["auto", "text", "jsonl"])
  st.add_argument("--field", default="text", help="JSONL field with the text")
  st.add_argument("--tokenizer", default="", help="SentencePiece .model: also count tokens")
  st.add_argument("--plot", default="", help="PNG path for the length histograms (default: none)")
  st.add_argument("--json", default="", help="also write the statistics as JSON here")
  st.add_argument("--top", type=int, default=10, help="domains/sources listed")


def _add_token_flags(p: argparse.ArgumentParser) -> None:
  p.add_argument("--bos-id", default="auto",
                 help="id read before each sequence: auto (0 for models trained here and T5; nothing for "
                      "GPT-2 converted from Hugging Face), none, or an id")


def _add_launch_flags(p: argparse.ArgumentParser) -> None:
  g = p.add_argument_group("launcher options")
  g.add_argument("--processes", type=positive, default=1, help="local: processes on this machine")
  g.add_argument("--devices", type=positive, default=4, help="local: simulated CPU devices per process")
  g.add_argument("--nodes", type=positive, default=1, help="slurm: nodes (one process each)")
  g.add_argument("--gpus-per-node", type=positive, default=8)
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
