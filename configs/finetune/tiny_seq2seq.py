"""Seq2seq fine-tuning of the tiny encoder-decoder: "category : fox" -> "noun" (the built-in
word_category task); the metric is exact match of the greedy output. The eval split asks
only words the fine-tuning data never shows: their category comes from pretraining.

  t5x-like train --config configs/finetune/tiny_seq2seq.py --workdir /tmp/t5x_like/ft_seq2seq \\
    --config.checkpoint.init_from=/tmp/t5x_like/tiny_t5/checkpoints

Other built-in tasks: --config.data.synthetic.task=arith_qa ("compute : 17 + 2 =" -> "19"),
count_qa (T5's span layout, "count : 4 5 <extra_id_0> 7 8 ." -> "<extra_id_0> 6
<extra_id_1>", with --config.data.seq_len=32). Own data: {"input": ..., "target": ...} lines.
"""

import os

from t5x_like.config.loading import import_file

_common = import_file(os.path.join(os.path.dirname(__file__), "_common.py"), "configs/finetune/_common.py")


def get_config():
  cfg = _common.tiny("t5.py", "ft_seq2seq", "seq2seq", seq_len=12, learning_rate=1e-3)
  cfg.data.task.targets_len = 12
  return cfg
