"""A tiny decoder-only model trained on the built-in corpus in a few minutes on 2 CPU cores.

  t5x-like train --config configs/tiny/gpt.py --workdir /tmp/t5x_like/tiny_gpt
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
      name="tiny_gpt",
      model=ModelConfig(
          family="decoder", vocab_size=512, d_model=128, num_layers=3, num_heads=4, d_ff=512,
          mlp_activation="swiglu", norm="rmsnorm", position="rope", tie_embeddings=True,
          dtype="float32", scan_layers=True, remat_policy="none"),
      data=DataConfig(source="synthetic", seq_len=128, synthetic_train_docs=20_000,
                      synthetic_eval_docs=1_000),
      optimizer=OptimizerConfig(learning_rate=5e-3, warmup_steps=30, schedule="cosine",
                                weight_decay=0.1, clip_norm=1.0),
      mesh=MeshConfig(data=-1, fsdp=1, tensor=1, rules="fsdp"),
      checkpoint=CheckpointConfig(every_steps=100, max_to_keep=2),
      train=TrainConfig(steps=350, batch_size=32, log_every=25, eval_every=100, eval_batches=4,
                        skill_eval_examples=128),
  )
