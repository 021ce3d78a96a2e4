"""Seq2seq fine-tuning of T5 v1.1 base converted from Hugging Face, on your JSON lines
({"input": ..., "target": ...}). Convert once, then train (the paths are yours):

  t5x-like convert --from-hf /models/t5-v1_1-base --output /ckpt/t5_base
  t5x-like train --config configs/finetune/t5_v1_1_base_seq2seq.py --workdir /runs/t5_base_qa \\
    --config.checkpoint.init_from=/ckpt/t5_base/0 \\
    --config.data.tokenizer.path=/models/t5-v1_1-base/spiece.model \\
    --config.data.train_files=/data/qa/train.jsonl --config.data.eval_files=/data/qa/dev.jsonl

T5's spiece.model is a SentencePiece model with pad 0 and EOS 1, as this pipeline expects.
Recipe as T5's fine-tuning (Raffel et al. 2020, 3.1.2): a constant learning rate of 1e-3
with Adafactor there; AdamW at 1e-4 here.
"""

import os

from t5x_like.config import Config, load_model_preset


def get_config() -> Config:
  cfg = Config()
  cfg.name = "t5_v1_1_base_seq2seq"
  cfg.model = load_model_preset(os.path.join(os.path.dirname(__file__), "..", "models", "t5.py"), "t5_v1_1_base")
  cfg.model.dtype = "bfloat16"
  cfg.data.source, cfg.data.objective = "jsonl", "seq2seq"
  cfg.data.seq_len, cfg.data.task.targets_len = 512, 128
  # T5's 100 sentinels follow the 32,000 pieces of its spiece.model (<extra_id_0> is id 32099,
  # as Hugging Face's tokenizer numbers them): "<extra_id_N>" in the data is read as sentinel N.
  cfg.data.tokenizer.extra_ids = 100
  cfg.optimizer.learning_rate, cfg.optimizer.schedule, cfg.optimizer.warmup_steps = 1e-4, "constant", 100
  cfg.optimizer.weight_decay = 0.0
  cfg.checkpoint.every_steps = 1000
  cfg.train.steps, cfg.train.batch_size, cfg.train.eval_every, cfg.train.eval_batches = 10_000, 128, 1000, 16
  cfg.train.skill_eval_examples = 0
  return cfg
