"""Token classification (tagging) with the tiny encoder: in two or three clauses, each word
put in a slot of another category is tagged B-ERR, the rest O (the built-in grammar_tags
task; held-out words as in tiny_classify.py); the metric is span-level F1.

  t5x-like train --config configs/finetune/tiny_tag.py --workdir /tmp/t5x_like/ft_tag \\
    --config.checkpoint.init_from=/tmp/t5x_like/tiny_bert/checkpoints

Own data: {"tokens": [...words], "tags": [...one per word]} lines and
--config.data.task.labels='["O", "B-PER", "I-PER", ...]'.
"""

import os

from t5x_like.config.loading import import_file

_common = import_file(os.path.join(os.path.dirname(__file__), "_common.py"), "configs/finetune/_common.py")


def get_config():
  cfg = _common.tiny("bert.py", "ft_tag", "tagging", seq_len=64, steps=300, learning_rate=1e-4)
  # Frozen embeddings keep the held-out words where pretraining put them, beside the words
  # of their category the head is trained on: span F1 0.38 frozen, 0.16 trained (measured,
  # docs/finetuning.md).
  cfg.optimizer.freeze_embeddings = True
  cfg.model.head, cfg.model.num_labels = "tag", 3
  cfg.data.task.labels = ["O", "B-ERR", "I-ERR"]
  return cfg
