"""Two learning rates x two widths of the tiny GPT, 200 steps each (about 2 minutes a run
on 2 CPU cores):

  t5x-like sweep configs/sweeps/tiny_lr_width.py --parallel 2
  t5x-like runs workdirs/sweeps/tiny_lr_width --plot workdirs/sweeps/tiny_lr_width/loss.png
"""

from t5x_like.sweep import Sweep


def get_sweep() -> Sweep:
  return Sweep(base="configs/tiny/gpt.py", root="workdirs/sweeps/tiny_lr_width",
               grid={"optimizer.learning_rate": [2e-3, 5e-3], "model.d_model": [64, 128]},
               fixed={"train.steps": 200, "train.eval_every": 50, "checkpoint.every_steps": 100})
