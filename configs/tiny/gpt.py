"""A tiny decoder-only model trained on the built-in corpus in a few minutes on 2 CPU cores.

  t5x-like train --config configs/tiny/gpt.py --workdir /tmp/t5x_like/tiny_gpt
"""

import os

from t5x_like.config import Config, ModelConfig, load_config_file


def get_config() -> Config:
  cfg = load_config_file(os.path.join(os.path.dirname(__file__), "base.py"))
  cfg.name = "tiny_gpt"
  # Modern decoder defaults: RoPE, RMSNorm, SwiGLU, tied embeddings.
  cfg.model = ModelConfig(family="decoder", vocab_size=512, d_model=128, num_layers=3, num_heads=4,
                          d_ff=512)
  cfg.data.seq_len = 128
  cfg.optimizer.learning_rate = 5e-3
  cfg.checkpoint.every_steps = 100
  cfg.train.steps, cfg.train.batch_size, cfg.train.eval_every = 350, 32, 100
  return cfg
