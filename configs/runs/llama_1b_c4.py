"""A Llama-style 1B decoder (the shapes of Llama 3.2 1B), causal LM on C4 (c4/en:3.1.0 from
TFDS, prepared beforehand), 2,048-token rows.

Optimisation of Touvron et al. 2023, "Llama 2: Open Foundation and Fine-Tuned Chat Models",
section 2.2: AdamW b1 0.9, b2 0.95, eps 1e-5, cosine decay to 10% of the peak, 2,000
warmup steps, weight decay 0.1, gradient clipping 1.0; the 7B's peak 3e-4 and 4M-token
batches are scaled to a 1B model here: peak 4e-4, 512 x 2048 = 1M tokens a step, 100,000
steps (100B tokens). A 128,256-entry vocabulary needs a tokenizer of that size.

Meshes (1.2B parameters and AdamW state: FSDP):
  v5p-64 (32 chips):  --config.mesh.data=1 --config.mesh.fsdp=32 --config.mesh.rules=fsdp
  v5e-256 (256 chips): --config.mesh.data=4 --config.mesh.fsdp=64 --config.mesh.rules=fsdp
  8 x H100:           --config.mesh.data=1 --config.mesh.fsdp=8 --config.mesh.rules=fsdp
"""

from t5x_like.config import Config, model_preset


def get_config() -> Config:
  cfg = Config(name="llama_1b_c4")
  cfg.model = model_preset("llama:llama_1b", dtype="bfloat16", remat_policy="dots_no_batch")
  d = cfg.data
  d.source, d.objective, d.seq_len = "tfds", "causal_lm", 2048
  d.tfds.name, d.tfds.train_split, d.tfds.eval_split = "c4/en:3.1.0", "train", "validation"
  d.tokenizer.path = "gs://YOUR_BUCKET/t5x_like/c4_en_spm128k.model"
  o = cfg.optimizer
  o.schedule, o.learning_rate, o.warmup_steps, o.end_lr_fraction = "cosine", 4e-4, 2000, 0.1
  o.b1, o.b2, o.eps, o.weight_decay, o.clip_norm = 0.9, 0.95, 1e-5, 0.1, 1.0
  cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.rules = -1, 8, "fsdp"
  t = cfg.train
  t.steps, t.batch_size, t.log_every, t.eval_every, t.eval_batches = 100_000, 512, 50, 2000, 20
  t.skill_eval_examples = 0
  cfg.checkpoint.every_steps, cfg.checkpoint.keep_period = 1000, 20_000
  return cfg
