"""Sentence-pair classification with the tiny encoder: are both clauses of the pair well
formed? (the built-in grammar_pair task: a word of another category misplaced in one of
them makes the pair wrong; held-out words as in tiny_classify.py). The row is
text EOS text_pair EOS with token types 0 and 1.

  t5x-like train --config configs/finetune/tiny_pair_classify.py --workdir /tmp/t5x_like/ft_pair \\
    --config.checkpoint.init_from=/tmp/t5x_like/tiny_bert/checkpoints
"""

import os

from t5x_like.config.loading import import_file

_common = import_file(os.path.join(os.path.dirname(__file__), "_common.py"), "configs/finetune/_common.py")


def get_config():
  cfg = _common.tiny("bert.py", "ft_pair_classify", "classification", seq_len=32, steps=400, learning_rate=2e-4)
  cfg.model.head, cfg.model.num_labels = "classify", 2
  cfg.data.synthetic.task = "grammar_pair"
  return cfg
