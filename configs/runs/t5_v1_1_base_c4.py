"""T5 v1.1 base, span corruption on C4 (c4/en:3.1.0 from TFDS, prepared beforehand).

Recipe of Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
Text-to-Text Transformer" (JMLR 21), as used for the T5 v1.1 checkpoints: a 32,000-piece
SentencePiece vocabulary plus 100 sentinels, inputs of 512 tokens (targets 114), noise
density 0.15 with mean span 3, and the scaled-up schedule of section 3.7: 1,000,000 steps of
2^11 sequences (about 1 trillion tokens; the published T5 v1.1 checkpoints are step
1,000,000), inverse-square-root learning rate 1/sqrt(max(n, 10^4)). Deviation: AdamW (b2
0.999, no weight decay) instead of Adafactor, which this project does not have yet.

Meshes (rules in docs/parallelism.md; 248M parameters fit on every chip, so data parallel
with FSDP on the fast axis):
  v5p-64 (32 chips):  --config.mesh.data=4 --config.mesh.fsdp=8 --config.mesh.rules=fsdp
  v5e-256 (256 chips): --config.mesh.data=32 --config.mesh.fsdp=8 --config.mesh.rules=fsdp
  8 x H100:           --config.mesh.data=1 --config.mesh.fsdp=8 --config.mesh.rules=fsdp
"""

from t5x_like.config import Config, model_preset


def get_config() -> Config:
  cfg = Config(name="t5_v1_1_base_c4")
  cfg.model = model_preset("t5:t5_v1_1_base", vocab_size=32_128, dtype="bfloat16", dropout_rate=0.0)
  d = cfg.data
  d.source, d.objective, d.seq_len = "tfds", "span_corruption", 512
  d.tfds.name, d.tfds.train_split, d.tfds.eval_split = "c4/en:3.1.0", "train", "validation"
  d.tokenizer.path = "gs://YOUR_BUCKET/t5x_like/c4_en_spm32k.model"  # t5x-like tokenizer train --vocab-size 32000
  d.tokenizer.extra_ids = 100
  d.span_corruption.noise_density, d.span_corruption.mean_span_length = 0.15, 3.0
  o = cfg.optimizer
  o.schedule, o.learning_rate, o.warmup_steps = "rsqrt", 0.01, 10_000
  o.b2, o.weight_decay, o.clip_norm = 0.999, 0.0, 1.0
  cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.rules = -1, 8, "fsdp"
  t = cfg.train
  t.steps, t.batch_size, t.log_every, t.eval_every, t.eval_batches = 1_000_000, 2048, 100, 5000, 20
  t.skill_eval_examples = 0
  cfg.checkpoint.every_steps, cfg.checkpoint.keep_period = 5000, 100_000
  return cfg
