"""What the tiny runs share: the built-in corpus (written and tokenized in the workdir),
a short warmup, two kept checkpoints, a small final eval and 128 skill items. Each tiny
config loads this and sets its model and its training length."""

from t5x_like.config import Config


def get_config() -> Config:
  cfg = Config()
  cfg.data.source = "synthetic"
  cfg.optimizer.warmup_steps = 30
  cfg.checkpoint.max_to_keep = 2
  cfg.train.log_every = 25
  cfg.train.eval_batches = 4
  cfg.train.skill_eval_examples = 128
  return cfg
