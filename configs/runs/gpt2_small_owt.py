"""GPT-2 small (124M), causal LM on an OpenWebText-like corpus of text files (one document
per line; `t5x-like data clean` / `data build` prepare them).

Shapes of Radford et al. 2019 ("Language Models are Unsupervised Multitask Learners");
optimisation of the 125M model in Brown et al. 2020 ("Language Models are Few-Shot
Learners"), table 2.1 and appendix B: batch 0.5M tokens (480 x 1024 here), lr 6e-4 with a
cosine decay to 10% and a linear warmup (375M tokens in GPT-3; 2,000 steps here), Adam b1
0.9, b2 0.95, eps 1e-8, weight decay 0.1, gradient clipping 1.0, over 300B tokens
(600,000 steps of 0.5M tokens). Dropout 0 (pretraining at this scale does not need it).

Meshes (124M parameters: data parallel, FSDP where memory is short):
  v5p-64 (32 chips):  --config.mesh.data=32 --config.mesh.rules=dp
  v5e-256 (256 chips): --config.mesh.data=32 --config.mesh.fsdp=8 --config.mesh.rules=fsdp (batch 480 -> 512)
  8 x H100:           --config.mesh.data=8 --config.mesh.rules=dp
"""

from t5x_like.config import Config, model_preset


def get_config() -> Config:
  cfg = Config(name="gpt2_small_owt")
  cfg.model = model_preset("gpt:gpt2_small", dropout_rate=0.0, dtype="bfloat16")
  d = cfg.data
  d.source, d.objective, d.seq_len = "text", "causal_lm", 1024
  d.train_files = "gs://YOUR_BUCKET/openwebtext/train-*.txt"
  d.eval_files = "gs://YOUR_BUCKET/openwebtext/validation-*.txt"
  d.tokenizer.path = "gs://YOUR_BUCKET/t5x_like/owt_spm50k.model"
  o = cfg.optimizer
  o.schedule, o.learning_rate, o.warmup_steps, o.end_lr_fraction = "cosine", 6e-4, 2000, 0.1
  o.b1, o.b2, o.eps, o.weight_decay, o.clip_norm = 0.9, 0.95, 1e-8, 0.1, 1.0
  cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.rules = -1, 1, "dp"
  t = cfg.train
  t.steps, t.batch_size, t.log_every, t.eval_every, t.eval_batches = 600_000, 480, 100, 2000, 20
  t.skill_eval_examples = 0
  cfg.checkpoint.every_steps, cfg.checkpoint.keep_period = 2000, 50_000
  return cfg
