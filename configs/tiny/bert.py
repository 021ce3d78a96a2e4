"""A tiny encoder-only (BERT-style) model trained with masked LM on the built-in corpus in a
few minutes on 2 CPU cores. The summary reports how often it predicts the tokens of a
held-out arithmetic answer, each masked on its own ("17 + 25 = [MASK] 2 .").

  t5x-like train --config configs/tiny/bert.py --workdir /tmp/t5x_like/tiny_bert
"""

import os

from t5x_like.config import Config, ModelConfig, load_config_file


def get_config() -> Config:
  cfg = load_config_file(os.path.join(os.path.dirname(__file__), "base.py"))
  cfg.name = "tiny_bert"
  cfg.model = ModelConfig(
      family="encoder", vocab_size=512, d_model=128, num_layers=3, num_heads=4, d_ff=512,
      mlp_activation="gelu", norm="layernorm", position="learned", max_len=128, use_bias=True,
      mlm_head=True, type_vocab_size=2)
  cfg.data.seq_len, cfg.data.objective = 128, "mlm"
  cfg.data.tokenizer.extra_ids = 1  # the last id of the vocabulary is the mask token
  cfg.optimizer.learning_rate, cfg.optimizer.weight_decay, cfg.optimizer.b2 = 2e-3, 0.01, 0.98
  cfg.checkpoint.every_steps = 100
  cfg.train.steps, cfg.train.batch_size, cfg.train.eval_every = 400, 32, 100
  return cfg
