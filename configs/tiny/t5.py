"""A tiny encoder-decoder (T5 v1.1-style MLP and norms, RoPE positions) model trained with
span corruption on the built-in corpus in about five minutes on 2 CPU cores. The summary
reports how often it fills a held-out counting-run number given as a noise span
("count : 5 6 <extra_id_0> 8 ." -> "7"), the same for arithmetic answers, and the eval loss
with each row's encoder input swapped for another row's (how much the decoder reads its
input). See docs/models.md for the measured figures.

  t5x-like train --config configs/tiny/t5.py --workdir /tmp/t5x_like/tiny_t5
"""

from t5x_like.config import (
  CheckpointConfig,
  Config,
  DataConfig,
  MeshConfig,
  ModelConfig,
  OptimizerConfig,
  TrainConfig,
)


def get_config() -> Config:
  return Config(
      name="tiny_t5",
      model=ModelConfig(
          family="encoder_decoder", vocab_size=512, d_model=128, num_layers=2,
          num_decoder_layers=2, num_heads=8, d_ff=384, mlp_activation="gated_gelu",
          norm="rmsnorm", norm_position="pre", position="rope", max_len=64, tie_embeddings=False,
          rescale_decoder_output=False, dtype="float32", init_std=0.1),
      # Measured after 500 steps of 64-token inputs (eval loss; with each row's encoder input
      # swapped for another row's in brackets): learned positions, 4 heads, init_std 0.02
      # 1.55 (2.00): the decoder mostly modelled the targets alone; init_std 0.1 (near T5's
      # 1/sqrt(d_model) for dense layers) 1.40 (2.22); RoPE 1.23 (2.53); RoPE with 8 heads
      # 1.17 (2.58). T5's relative buckets reached 1.61 in the same steps.
      # Short inputs matter at this budget (likely because each decoder query has fewer keys
      # to search for its sentinel). 32 input tokens hold about 35 raw tokens with 2 noise
      # spans; counting-run filling after 500 / 1000 / 1500 steps: 4% / 72% / 95%; with 64
      # tokens 0% after 500 steps. A third encoder layer: 100% after 1500, but 35% slower.
      data=DataConfig(source="synthetic", seq_len=32, objective="span_corruption", extra_ids=16,
                      synthetic_train_docs=20_000, synthetic_eval_docs=1_000),
      optimizer=OptimizerConfig(learning_rate=3e-3, warmup_steps=30, schedule="cosine",
                                weight_decay=0.01, clip_norm=1.0),
      mesh=MeshConfig(data=-1, fsdp=1, tensor=1, rules="fsdp"),
      checkpoint=CheckpointConfig(every_steps=250, max_to_keep=2),
      train=TrainConfig(steps=1500, batch_size=64, log_every=50, eval_every=250, eval_batches=4,
                        skill_eval_examples=128),
  )
