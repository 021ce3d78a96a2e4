"""What the tiny fine-tuning configs share: the pretrained tiny config of the family, the
built-in task (examples written to WORKDIR/corpus), a short run with a held-out task
evaluation every 50 steps. The pretrained checkpoint is given on the command line:

  --config.checkpoint.init_from=/tmp/t5x_like/tiny_bert/checkpoints

Its tokenizer (PRETRAIN_WORKDIR/tokenizer/spm.model) is found from there; a run from
scratch for comparison names it with --config.data.tokenizer.path instead.
"""

import os

from t5x_like.config import Config, load_config_file


def tiny(family_config: str, name: str, objective: str, *, seq_len: int, steps: int = 200,
         learning_rate: float = 5e-4) -> Config:
  here = os.path.dirname(__file__)
  cfg = load_config_file(os.path.join(here, "..", "tiny", family_config))
  cfg.name = name
  cfg.data.objective, cfg.data.seq_len = objective, seq_len
  cfg.data.synthetic.train_docs = 2_000  # only its tokenizer is trained on it (runs from scratch)
  cfg.optimizer.learning_rate, cfg.optimizer.warmup_steps = learning_rate, 20
  cfg.optimizer.weight_decay = 0.01
  cfg.checkpoint.every_steps, cfg.checkpoint.max_to_keep = 100, 1
  cfg.train.steps, cfg.train.batch_size = steps, 32
  cfg.train.log_every, cfg.train.eval_every, cfg.train.eval_batches = 50, 50, 8
  cfg.train.skill_eval_examples = 0
  return cfg
