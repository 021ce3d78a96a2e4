"""Contrastive sentence embeddings from given pairs (the built-in paraphrase task: a sentence
and its passive form), InfoNCE over in-batch negatives. The metric is held-out retrieval
accuracy: how often a sentence's own paraphrase is the most similar of the batch.

  t5x-like train --config configs/finetune/tiny_pairs.py --workdir /tmp/t5x_like/ft_pairs \\
    --config.checkpoint.init_from=/tmp/t5x_like/tiny_bert/checkpoints

Own data: {"text": ..., "text_pair": ...} lines of related texts.
"""

import os

from t5x_like.config.loading import import_file

_common = import_file(os.path.join(os.path.dirname(__file__), "_common.py"), "configs/finetune/_common.py")


def get_config():
  cfg = _common.tiny("bert.py", "ft_pairs", "pairs", seq_len=64)
  cfg.model.head = "embed"
  return cfg
