"""Seq2seq fine-tuning of the tiny encoder-decoder: "compute : 17 + 2 =" -> "19" (the
built-in arith_qa task); the metric is exact match of the greedy output.

  t5x-like train --config configs/finetune/tiny_seq2seq.py --workdir /tmp/t5x_like/ft_seq2seq \\
    --config.checkpoint.init_from=/tmp/t5x_like/tiny_t5/checkpoints

Own data: {"input": ..., "target": ...} lines.
"""

import os

from t5x_like.config.loading import import_file

_common = import_file(os.path.join(os.path.dirname(__file__), "_common.py"), "configs/finetune/_common.py")


def get_config():
  cfg = _common.tiny("t5.py", "ft_seq2seq", "seq2seq", seq_len=16, learning_rate=1e-3)
  cfg.data.task.targets_len = 8
  return cfg
