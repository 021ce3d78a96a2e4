"""Unsupervised contrastive sentence embeddings (SimCSE): every document of the corpus is
its own positive under another dropout mask, the batch's other documents the negatives.

  t5x-like train --config configs/finetune/tiny_simcse.py --workdir /tmp/t5x_like/ft_simcse \\
    --config.checkpoint.init_from=/tmp/t5x_like/tiny_bert/checkpoints
"""

import os

from t5x_like.config.loading import import_file

_common = import_file(os.path.join(os.path.dirname(__file__), "_common.py"), "configs/finetune/_common.py")


def get_config():
  cfg = _common.tiny("bert.py", "ft_simcse", "contrastive", seq_len=64)
  cfg.model.head, cfg.model.dropout_rate = "embed", 0.1
  cfg.train.eval_batches = 2
  return cfg
