"""Token classification (tagging) with the tiny encoder: the words of each wrong equation
in a sentence are tagged B-ERR I-ERR ..., the rest O (the built-in error_tags task); the
metric is span-level F1.

  t5x-like train --config configs/finetune/tiny_tag.py --workdir /tmp/t5x_like/ft_tag \\
    --config.checkpoint.init_from=/tmp/t5x_like/tiny_bert/checkpoints

Own data: {"tokens": [...words], "tags": [...one per word]} lines and
--config.data.task.labels='["O", "B-PER", "I-PER", ...]'.
"""

import os

from t5x_like.config.loading import import_file

_common = import_file(os.path.join(os.path.dirname(__file__), "_common.py"), "configs/finetune/_common.py")


def get_config():
  cfg = _common.tiny("bert.py", "ft_tag", "tagging", seq_len=64)
  cfg.model.head, cfg.model.num_labels = "tag", 3
  cfg.data.task.labels = ["O", "B-ERR", "I-ERR"]
  return cfg
