"""Prompt/completion fine-tuning of the tiny decoder: "compute : 17 + 2 =" -> "19" (the
built-in arith_qa task), with the loss on the completion only; the metric is exact match of
the greedy continuation.

  t5x-like train --config configs/finetune/tiny_completion.py --workdir /tmp/t5x_like/ft_completion \\
    --config.checkpoint.init_from=/tmp/t5x_like/tiny_gpt/checkpoints

Own data: {"prompt": ..., "completion": ...} lines.
"""

import os

from t5x_like.config.loading import import_file

_common = import_file(os.path.join(os.path.dirname(__file__), "_common.py"), "configs/finetune/_common.py")


def get_config():
  cfg = _common.tiny("gpt.py", "ft_completion", "completion", seq_len=16)
  cfg.data.task.targets_len = 8  # generated tokens at evaluation
  return cfg
