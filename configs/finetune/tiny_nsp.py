"""BERT's pretraining: masked LM with next-sentence prediction on the built-in corpus (each
document cut in two; half the second parts from another document). The summary reports the
held-out NSP accuracy beside the MLM loss.

  t5x-like train --config configs/finetune/tiny_nsp.py --workdir /tmp/t5x_like/tiny_bert_nsp
"""

import os

from t5x_like.config.loading import import_file

_common = import_file(os.path.join(os.path.dirname(__file__), "_common.py"), "configs/finetune/_common.py")


def get_config():
  cfg = _common.tiny("bert.py", "tiny_bert_nsp", "mlm_nsp", seq_len=64, steps=400, learning_rate=2e-3)
  cfg.model.nsp = True
  cfg.train.eval_every = 100
  return cfg
