"""Sequence classification with the tiny encoder: is "17 + 2 = 19 ." correct or wrong?
(the built-in arith_check task: half the equations are off by 1-3, and the held-out
problems are never in the fine-tuning train split, only in the pretraining corpus).

  t5x-like train --config configs/finetune/tiny_classify.py --workdir /tmp/t5x_like/ft_classify \\
    --config.checkpoint.init_from=/tmp/t5x_like/tiny_bert/checkpoints

Own data: --config.data.source=jsonl --config.data.train_files=train.jsonl
--config.data.eval_files=dev.jsonl with {"text": ..., "label": ...} lines,
--config.data.task.labels='["neg", "pos"]' (model.num_labels to match) and
--config.data.tokenizer.path=the pretrained model's tokenizer.
"""

import os

from t5x_like.config.loading import import_file

_common = import_file(os.path.join(os.path.dirname(__file__), "_common.py"), "configs/finetune/_common.py")


def get_config():
  cfg = _common.tiny("bert.py", "ft_classify", "classification", seq_len=32)
  cfg.model.head, cfg.model.num_labels = "classify", 2
  cfg.data.synthetic.task = "arith_check"
  return cfg
