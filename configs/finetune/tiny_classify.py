"""Sequence classification with the tiny encoder: is "the red fox greets a big sees ." a
well-formed sentence? (the built-in grammar_check task: half the sentences have a word put
in a slot of another category; the words misplaced in the held-out split are never
misplaced in the fine-tuning train split, so only what pretraining taught about them
tells them apart). A small learning rate keeps what the body knows: at 5e-4 the
pretrained model did no better than one from scratch.

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
  cfg = _common.tiny("bert.py", "ft_classify", "classification", seq_len=32, steps=300, learning_rate=1e-4)
  cfg.model.head, cfg.model.num_labels = "classify", 2
  cfg.data.synthetic.task = "grammar_check"
  return cfg
