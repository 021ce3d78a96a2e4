"""The run configuration's schema: typed dataclasses, one short comment per field.

Choices are `Literal` types next to their fields and numeric bounds are field metadata
(`_f(default, gt=0)`), so `validation.py` checks every field from this file alone. Config
files (`configs/*.py`) return a `Config`; `--config.a.b=value` overrides set its fields.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from t5x_like.data import builtin_tasks

BuiltinTask = Literal[("", *builtin_tasks.TASKS)]  # the names of t5x_like/data/builtin_tasks.py, read from there
Family = Literal["decoder", "encoder", "encoder_decoder"]
Source = Literal["synthetic", "text", "jsonl", "tfrecord", "tfds"]
Objective = Literal["causal_lm", "prefix_lm", "mlm", "span_corruption", "mlm_nsp", "contrastive",
                    "classification", "tagging", "seq2seq", "completion", "pairs"]


def _f(default: Any, **bounds: float) -> Any:
  """A scalar field with bounds that validation checks: ge, gt, le, lt."""
  return dataclasses.field(default=default, metadata=bounds)


def _section(cls) -> Any:
  return dataclasses.field(default_factory=cls)


@dataclasses.dataclass
class ModelConfig:
  # "MODULE:NAME": PRESETS[NAME] of configs/models/MODULE.py, e.g. "gpt:gpt2_small"; set on
  # the command line it replaces the model section first, and other model overrides apply on top.
  preset: str = ""
  family: Family = "decoder"
  vocab_size: int = _f(512, gt=0)  # must cover the tokenizer's pieces (+ sentinels), checked at start
  d_model: int = _f(128, gt=0)  # width of the residual stream
  num_layers: int = _f(2, gt=0)  # layers of the (only, or encoder) stack
  num_decoder_layers: int = _f(0, ge=0)  # encoder_decoder only; 0 means num_layers
  num_heads: int = _f(4, gt=0)  # query heads
  num_kv_heads: int = _f(0, ge=0)  # key/value heads for grouped-query attention; 0 means num_heads
  head_dim: int = _f(0, ge=0)  # 0 means d_model // num_heads
  d_ff: int = _f(512, gt=0)  # hidden width of the MLP
  mlp_activation: Literal["swiglu", "gated_gelu", "gelu", "relu"] = "swiglu"
  norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
  norm_position: Literal["pre", "post"] = "pre"
  norm_eps: float = _f(1e-6, gt=0)
  position: Literal["rope", "learned", "relative", "none"] = "rope"
  max_len: int = _f(2048, gt=0)  # table size for learned positions
  rope_theta: float = _f(10_000.0, gt=0)
  relative_buckets: int = _f(32, gt=0)  # T5 relative position bias
  relative_max_distance: int = _f(128, gt=0)
  tie_embeddings: bool = True  # output projection shares the input embedding
  use_bias: bool = False  # biases in dense layers (GPT-2/BERT style)
  dropout_rate: float = _f(0.0, ge=0, lt=1)
  dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # compute dtype
  param_dtype: Literal["float32", "bfloat16"] = "float32"  # master weights: float32 only (validation says why)
  scan_layers: bool = True  # run the stack with jax.lax.scan (compile time flat in depth)
  # auto: dots on CPU (less memory traffic, 7-19% faster steps there, measured), none on GPU/TPU
  remat_policy: Literal["auto", "none", "full", "dots", "dots_no_batch"] = "auto"
  # auto: chunked on CPU (queries in blocks, measured faster there), xla on GPU/TPU; cudnn on GPUs
  attention_impl: Literal["auto", "xla", "cudnn", "chunked"] = "auto"
  z_loss: float = _f(0.0, ge=0)  # coefficient of log(Z)^2 in the loss
  # Positions of the length axis per chunk of the loss (head + cross-entropy, each chunk
  # recomputed in the backward pass); 0 makes the whole [batch, length, vocab] logits at once.
  loss_chunk: int = _f(0, ge=0)
  init_std: float = _f(0.02, gt=0)
  # Family details needed to reproduce published models (BERT, GPT-2, T5); see docs/models.md.
  gelu_approximate: bool = True  # tanh GELU (GPT-2 "gelu_new", T5 v1.1); false: exact erf GELU (BERT)
  attention_scale: float = _f(0.0, ge=0)  # multiplies q.k; 0 means head_dim**-0.5; T5 uses 1.0 (folded into init)
  type_vocab_size: int = _f(0, ge=0)  # encoder: BERT token-type (sentence A/B) embeddings; 0 means none
  embed_norm: bool = False  # normalise the summed embeddings before the stack (BERT)
  mlm_head: bool = False  # encoder: dense + gelu + norm, then the projection plus a vocab bias (BERT)
  # Encoder MLM loss: each row's scored positions moved to its front and the head (with the
  # MLM transform) run over chunks of this many, skipping chunks where no row scores
  # (models/losses.py:scored_cross_entropy); 0 runs the head over every position.
  mlm_scored_chunk: int = _f(32, ge=0)
  rescale_decoder_output: bool = True  # encoder_decoder: final states * d_model**-0.5 before the head (T5 v1.0)
  # Llama-family details (Llama 3, Mistral, Qwen2); see docs/models.md.
  qkv_bias: bool = False  # biases on the q/k/v projections even when use_bias is false (Qwen2)
  sliding_window: int = _f(0, ge=0)  # decoder: attend to the last sliding_window tokens, self included (Mistral); 0: all
  rope_scaling: Literal["none", "llama3"] = "none"  # llama3: Llama 3.1's long-context RoPE frequency rescaling
  rope_scaling_factor: float = _f(8.0, gt=0)  # llama3: low frequencies are divided by this
  rope_low_freq_factor: float = _f(1.0, gt=0)  # llama3: wavelengths over original_max_len / this: fully scaled
  rope_high_freq_factor: float = _f(4.0, gt=0)  # llama3: wavelengths under original_max_len / this: kept
  rope_original_max_len: int = _f(8192, gt=0)  # llama3: the context length pretraining used
  # Task heads (encoder family; see docs/finetuning.md). lm: the family's language-model head;
  # classify: pooled states -> pooler -> num_labels; tag: a num_labels projection per token;
  # embed: pooled, L2-normalised states trained by InfoNCE (data.objective=contrastive|pairs).
  head: Literal["lm", "classify", "tag", "embed"] = "lm"
  num_labels: int = _f(0, ge=0)  # classes of the classify/tag head
  pooling: Literal["mean", "first"] = "mean"  # classify/embed/nsp: mean of the row's (segment's) states, or its first
  nsp: bool = False  # encoder: a next-sentence head beside the MLM head (data.objective=mlm_nsp)
  contrastive_temperature: float = _f(0.05, gt=0)  # InfoNCE: cosine similarities are divided by this


# ---------------------------------------------------------------- data: one section per source


@dataclasses.dataclass
class JsonlConfig:
  field: str = "text"  # the string field of each JSON line that holds the document


@dataclasses.dataclass
class TFRecordConfig:
  feature: str = "text"  # the bytes feature of each tf.train.Example that holds the document


@dataclasses.dataclass
class TfdsConfig:
  name: str = ""  # name[/config][:version], e.g. "c4/en:3.1.0"; prepared data only, never downloaded
  data_dir: str = ""
  text_key: str = "text"  # the string feature that holds the document
  train_split: str = "train"
  eval_split: str = "validation"


@dataclasses.dataclass
class SyntheticConfig:
  corpus_dir: str = ""  # where the built-in corpus is written; empty means WORKDIR/corpus
  train_docs: int = _f(20_000, gt=0)
  eval_docs: int = _f(1_000, gt=0)
  # Built-in fine-tuning task for the task objectives (t5x_like/data/builtin_tasks.py); ""
  # picks the objective's default: classification grammar_check, tagging grammar_tags,
  # seq2seq/completion arith_qa, pairs paraphrase.
  task: BuiltinTask = ""
  task_train_examples: int = _f(2_000, gt=0)
  task_eval_examples: int = _f(500, gt=0)


@dataclasses.dataclass
class TokenizerConfig:
  path: str = ""  # SentencePiece .model; empty with source=synthetic means train one in WORKDIR
  # Sentinels follow T5: `extra_ids` ids are appended after the tokenizer's pieces and
  # sentinel i is id vocab + extra_ids - 1 - i (the end of the vocabulary); model.vocab_size
  # must cover them. MLM uses sentinel 0 as its mask token unless the tokenizer has a
  # "<mask>" or "[MASK]" piece.
  extra_ids: int = _f(100, ge=0)


# ---------------------------------------------------------------- data: one section per objective


@dataclasses.dataclass
class MlmConfig:
  probability: float = 0.15  # fraction of (maskable) tokens selected for prediction
  mask_rate: float = 0.8  # of the selected: replaced by the mask token
  random_rate: float = 0.1  # of the selected: replaced by a random token (the rest unchanged)


@dataclasses.dataclass
class SpanCorruptionConfig:
  noise_density: float = 0.15  # fraction of tokens in noise spans
  mean_span_length: float = 3.0  # mean noise span length, in tokens
  targets_len: int = _f(0, ge=0)  # decoder row length; 0 derives it from seq_len like T5


@dataclasses.dataclass
class TaskConfig:
  """Fine-tuning data: JSON lines with named fields (data.source=jsonl, or built-in tasks)."""

  text_field: str = "text"  # classification and pairs: the (first) text
  pair_field: str = "text_pair"  # classification: optional second text (a sentence pair); pairs: the positive
  label_field: str = "label"  # classification: a label name from `labels`, or its index
  labels: list = dataclasses.field(default_factory=list)  # label (tag) names, index = class id
  tokens_field: str = "tokens"  # tagging: a list of words
  tags_field: str = "tags"  # tagging: one tag per word (BIO spans: B-X, I-X, O)
  input_field: str = "input"  # seq2seq: encoder text
  target_field: str = "target"  # seq2seq: decoder text
  prompt_field: str = "prompt"  # completion: the context (no loss on it)
  completion_field: str = "completion"  # completion: the scored continuation
  targets_len: int = _f(0, ge=0)  # seq2seq: decoder row length; 0 means data.seq_len


@dataclasses.dataclass
class NspConfig:
  probability_random: float = _f(0.5, gt=0, lt=1)  # share of pairs whose second part is another document's
  # start: that part is the other document's beginning (BERT's random segment starts a sentence);
  # cut: its continuation after a random cut, so only the meeting point tells the pairs apart.
  random_from: Literal["start", "cut"] = "start"


@dataclasses.dataclass
class MixtureEntry:
  """One component of `data.mixture`: a weight and the data fields it sets, as dotted keys
  (`{"source": "jsonl", "jsonl.field": "body"}`); the others come from `data`. Config files
  and overrides may write entries as plain dicts, also with nested sections."""

  weight: float = 0.0
  fields: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DataConfig:
  source: Source = "synthetic"  # which reader; its own section below holds its options
  train_files: str = ""  # glob of input files (source=text|jsonl|tfrecord)
  eval_files: str = ""  # glob for the held-out split; empty means the training files
  jsonl: JsonlConfig = _section(JsonlConfig)
  tfrecord: TFRecordConfig = _section(TFRecordConfig)
  tfds: TfdsConfig = _section(TfdsConfig)
  synthetic: SyntheticConfig = _section(SyntheticConfig)
  tokenizer: TokenizerConfig = _section(TokenizerConfig)
  seq_len: int = _f(128, gt=0)  # tokens per row (encoder inputs for span corruption)
  objective: Objective = "causal_lm"  # must feed model.family; its options are in its section
  mlm: MlmConfig = _section(MlmConfig)
  span_corruption: SpanCorruptionConfig = _section(SpanCorruptionConfig)
  nsp: NspConfig = _section(NspConfig)
  task: TaskConfig = _section(TaskConfig)
  shuffle_buffer: int = _f(10_000, ge=0)  # documents in the seeded shuffle buffer
  # ... and at most this much text in it, by the input's mean document size (it is held in
  # memory and saved in every checkpoint; docs/data.md)
  shuffle_buffer_mib: int = _f(64, ge=1)
  # causal_lm, mlm: rows cut from the EOS-joined stream with no segment masks (GPT-2 style);
  # false keeps one segment per document piece, attention never crossing a document.
  cross_document: bool = False
  seed: int = 0
  num_parallel_calls: int = _f(-1, ge=-1)  # -1 means tf.data.AUTOTUNE
  # files: each host reads its own files (scales; batches depend on the host count).
  # rows: every host reads the whole stream and keeps its slice of each global batch, so
  # the batches are identical for any host count (costs host_count x the input work).
  host_split: Literal["files", "rows"] = "files"
  skip_bad_lines: bool = False  # skip (and count) undecodable records instead of stopping
  mixture: list[MixtureEntry] = dataclasses.field(default_factory=list)  # weighted components


@dataclasses.dataclass
class OptimizerConfig:
  learning_rate: float = _f(3e-3, gt=0)  # peak learning rate
  warmup_steps: int = _f(100, ge=0)
  # rsqrt: T5's inverse square root, peak until warmup_steps then peak * sqrt(warmup_steps / step)
  schedule: Literal["cosine", "linear", "constant", "rsqrt"] = "cosine"
  end_lr_fraction: float = _f(0.1, ge=0, le=1)  # final learning rate as a fraction of the peak
  b1: float = _f(0.9, ge=0, lt=1)
  b2: float = _f(0.95, ge=0, lt=1)
  eps: float = _f(1e-8, gt=0)
  weight_decay: float = _f(0.1, ge=0)  # decoupled; not applied to norms, biases or scalars
  clip_norm: float = _f(1.0, ge=0)  # global-norm clipping; 0 disables
  # Fine-tuning (docs/finetuning.md). The body is every parameter but the task head.
  body_lr_scale: float = _f(1.0, ge=0)  # the body's updates times this (a smaller learning rate than the head's)
  freeze_embeddings: bool = False  # no updates to token, position and type embeddings
  freeze_layers: int = _f(0, ge=0)  # no updates to the first N layers of each stack
  # Gradual unfreezing (ULMFiT): the head trains from step 0, then one more layer from the top
  # every unfreeze_every steps, the embeddings last; 0 disables.
  unfreeze_every: int = _f(0, ge=0)


@dataclasses.dataclass
class MeshConfig:
  data: int = -1  # -1 means all devices not used by the other axes
  fsdp: int = 1
  tensor: int = 1
  # Across slices/hosts (DCN): each mesh axis is dcn_x * x devices, the DCN part slowest.
  # E.g. 4 hosts x 8 GPUs as pure data parallelism across hosts: dcn_data=4, fsdp=8.
  dcn_data: int = 1
  dcn_fsdp: int = 1
  dcn_tensor: int = 1
  rules: Literal["dp", "fsdp", "fsdp_tp", "tp", "custom"] = "fsdp"
  custom_rules: list = dataclasses.field(default_factory=list)  # [[logical, mesh_axis|null], ...]


@dataclasses.dataclass
class CheckpointConfig:
  enabled: bool = True
  every_steps: int = _f(500, ge=1)
  max_to_keep: int = _f(3, ge=1)
  keep_period: int = _f(0, ge=0)  # additionally keep every N-th step forever; 0 disables
  async_save: bool = True
  restore_from: str = ""  # a step number or a checkpoint directory; empty means latest
  skip_corrupt: bool = False  # fall back to the newest checkpoint that restores, instead of stopping
  init_from: str = ""  # warm start: params only from a checkpoint step dir (new optimizer state)
  # Resume without the saved data position: the stream restarts, skipping the tokens already
  # seen. Needed after changing the data config (other than batch size or seq_len).
  reset_data_iterator: bool = False


@dataclasses.dataclass
class TrainConfig:
  steps: int = _f(1000, gt=0)  # total optimizer steps (the learning-rate schedule spans these)
  stop_at_step: int = _f(0, ge=0)  # end this invocation after this step (0 = steps); rerun to continue
  batch_size: int = _f(32, gt=0)  # global, in sequences per optimizer step
  grad_accum_steps: int = _f(1, gt=0)  # micro-batches per step; batch_size must divide evenly
  log_every: int = _f(50, gt=0)
  eval_every: int = _f(200, ge=0)  # 0 disables periodic eval (a final eval still runs)
  eval_batches: int = _f(8, ge=0)
  skill_eval_examples: int = _f(64, ge=0)  # prompts scored by greedy decoding at the end (0 disables)
  profile_from_step: int = _f(0, ge=0)  # trace profile_steps steps from here to WORKDIR/profile (0: off)
  profile_steps: int = _f(5, gt=0)
  seed: int = 0
  peak_tflops_per_device: float = _f(0.0, ge=0)  # for MFU; 0 means look up the device kind
  max_consecutive_nonfinite: int = _f(5, ge=0)  # stop (after saving) when this many steps in a row are skipped


@dataclasses.dataclass
class Config:
  name: str = "run"
  model: ModelConfig = _section(ModelConfig)
  data: DataConfig = _section(DataConfig)
  optimizer: OptimizerConfig = _section(OptimizerConfig)
  mesh: MeshConfig = _section(MeshConfig)
  checkpoint: CheckpointConfig = _section(CheckpointConfig)
  train: TrainConfig = _section(TrainConfig)


# The model family each data objective feeds.
OBJECTIVE_FAMILY = {"causal_lm": "decoder", "prefix_lm": "decoder", "mlm": "encoder",
                    "span_corruption": "encoder_decoder", "mlm_nsp": "encoder", "contrastive": "encoder",
                    "classification": "encoder", "tagging": "encoder", "seq2seq": "encoder_decoder",
                    "completion": "decoder", "pairs": "encoder"}
# Objectives that read labelled examples (JSON lines with named fields), one example per row.
TASK_OBJECTIVES = ("classification", "tagging", "seq2seq", "completion", "pairs")
# The encoder head each encoder objective trains.
OBJECTIVE_HEAD = {"mlm": "lm", "mlm_nsp": "lm", "contrastive": "embed", "pairs": "embed",
                  "classification": "classify", "tagging": "tag"}
# Objectives whose ids include sentinels beyond the tokenizer's vocabulary (seq2seq: T5's
# fine-tuning data may write them, "<extra_id_0>").
SENTINEL_OBJECTIVES = ("mlm", "span_corruption", "mlm_nsp", "seq2seq")
# Objectives whose rows keep documents apart unless data.cross_document joins them; the
# others already cut rows from the EOS-joined stream (T5's layout).
CROSS_DOCUMENT_OBJECTIVES = ("causal_lm", "mlm")
# Data fields every mixture component shares: one tokenizer and vocabulary, one seed, one
# way of splitting rows across hosts, one built-in corpus.
MIXTURE_SHARED = ("mixture", "tokenizer", "seed", "host_split", "synthetic")


def objectives_for(family: str) -> list[str]:
  """The data objectives that feed `family`, the default (the family's pretraining one) first."""
  return [k for k, v in OBJECTIVE_FAMILY.items() if v == family]
