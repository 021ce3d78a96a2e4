"""A tiny encoder-decoder (T5 v1.1-style MLP and norms, RoPE positions) model trained with
span corruption on the built-in corpus in about five minutes on 2 CPU cores. The summary
reports how often it fills a held-out counting-run number given as a noise span
("count : 5 6 <extra_id_0> 8 ." -> "7"), the same for arithmetic answers, and the eval loss
with each row's encoder input swapped for another row's (how much the decoder reads its
input). See docs/models.md for the measured figures.

  t5x-like train --config configs/tiny/t5.py --workdir /tmp/t5x_like/tiny_t5
"""

import os

from t5x_like.config import Config, ModelConfig, load_config_file


def get_config() -> Config:
  cfg = load_config_file(os.path.join(os.path.dirname(__file__), "base.py"))
  cfg.name = "tiny_t5"
  cfg.model = ModelConfig(
      family="encoder_decoder", vocab_size=512, d_model=128, num_layers=2, num_decoder_layers=2,
      num_heads=8, d_ff=384, mlp_activation="gated_gelu", max_len=64, tie_embeddings=False,
      rescale_decoder_output=False, init_std=0.1)
  # Measured after 500 steps of 64-token inputs (eval loss; with each row's encoder input
  # swapped for another row's in brackets): learned positions, 4 heads, init_std 0.02
  # 1.55 (2.00): the decoder mostly modelled the targets alone; init_std 0.1 (near T5's
  # 1/sqrt(d_model) for dense layers) 1.40 (2.22); RoPE 1.23 (2.53); RoPE with 8 heads
  # 1.17 (2.58). T5's relative buckets reached 1.61 in the same steps.
  # Short inputs matter at this budget (likely because each decoder query has fewer keys
  # to search for its sentinel). 32 input tokens hold about 35 raw tokens with 2 noise
  # spans; counting-run filling after 500 / 1000 / 1500 steps: 4% / 72% / 95%; with 64
  # tokens 0% after 500 steps. A third encoder layer: 100% after 1500, but 35% slower.
  cfg.data.seq_len, cfg.data.objective = 32, "span_corruption"
  cfg.data.tokenizer.extra_ids = 16
  cfg.optimizer.learning_rate, cfg.optimizer.weight_decay = 3e-3, 0.01
  cfg.checkpoint.every_steps = 250
  cfg.train.steps, cfg.train.batch_size, cfg.train.log_every, cfg.train.eval_every = 1500, 64, 50, 250
  return cfg
