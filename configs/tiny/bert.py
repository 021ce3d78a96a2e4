"""A tiny encoder-only (BERT-style) model trained with masked LM on the built-in corpus in a
few minutes on 2 CPU cores. The summary reports how often it predicts the tokens of a
held-out arithmetic answer, each masked on its own ("17 + 25 = [MASK] 2 .").

  t5x-like train --config configs/tiny/bert.py --workdir /tmp/t5x_like/tiny_bert
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
      name="tiny_bert",
      model=ModelConfig(
          family="encoder", vocab_size=512, d_model=128, num_layers=3, num_heads=4, d_ff=512,
          mlp_activation="gelu", norm="layernorm", norm_position="pre", position="learned",
          max_len=128, use_bias=True, mlm_head=True, tie_embeddings=True, dtype="float32"),
      # extra_ids=1: the last id of the vocabulary is the mask token.
      data=DataConfig(source="synthetic", seq_len=128, objective="mlm", extra_ids=1,
                      synthetic_train_docs=20_000, synthetic_eval_docs=1_000),
      optimizer=OptimizerConfig(learning_rate=2e-3, warmup_steps=30, schedule="cosine",
                                weight_decay=0.01, b2=0.98, clip_norm=1.0),
      mesh=MeshConfig(data=-1, fsdp=1, tensor=1, rules="fsdp"),
      checkpoint=CheckpointConfig(every_steps=100, max_to_keep=2),
      train=TrainConfig(steps=400, batch_size=32, log_every=25, eval_every=100, eval_batches=4,
                        skill_eval_examples=128),
  )
