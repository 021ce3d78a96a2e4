"""The batch contract: every objective yields exactly its family's features (names, dtypes,
row lengths), `fake_batch` follows the contract, and each family's loss reads it."""

import numpy as np
import pytest
from flax import nnx

from t5x_like import config as C
from t5x_like import features as F
from t5x_like.data import pipeline
from t5x_like.models import create_model, family_class


@pytest.mark.parametrize("objective", list(C.OBJECTIVE_FAMILY))
def test_objectives_yield_their_family_contract(objective, corpus, spm_path, tmp_path):
  family = C.OBJECTIVE_FAMILY[objective]
  contract = family_class(family).contract
  files, source, task = corpus["train"], "text", {}
  if objective in C.TASK_OBJECTIVES:  # labelled examples: the built-in task's JSON lines
    from t5x_like.data import builtin_tasks

    name = builtin_tasks.DEFAULT_TASK[objective]
    files = builtin_tasks.write_task(str(tmp_path), name, num_train=16, num_eval=4)["train"]
    source, task = "jsonl", {"task.labels": builtin_tasks.LABELS.get(name, [])}
  data = C.replace(C.Config(), data=dict(source=source, seq_len=32, objective=objective, shuffle_buffer=8, **task,
                                         **({"tokenizer.extra_ids": 8} if objective in C.SENTINEL_OBJECTIVES else {}))).data
  ds = pipeline.make_dataset(data, files=files, tokenizer_path=spm_path, batch_size=4)
  spec = ds.element_spec
  assert set(contract.required) <= set(spec) <= set(contract.names), (sorted(spec), contract.names)
  batch = {k: v.numpy() for k, v in next(iter(ds)).items()}
  lengths = {"inputs": 32, "targets": contract.lengths(batch)[1] or 32, "row": 1}
  for f in contract.features:
    if f.name in spec:
      assert spec[f.name].dtype.name == f.dtype and batch[f.name].shape == (4, lengths[f.length]), f


@pytest.mark.parametrize("contract", [F.DECODER_ONLY, F.ENCODER_ONLY, F.ENCODER_DECODER], ids=lambda c: c.family)
def test_fake_batch_follows_the_contract_and_feeds_the_loss(contract):
  batch = contract.fake_batch(3, 16, 8, vocab_size=64, seed=1)
  assert set(batch) == set(contract.required)
  separate = contract.target_side is not contract.first_side
  assert contract.lengths(batch) == (16, 8 if separate else 0)
  for f in contract.features:
    if f.required:
      assert batch[f.name].dtype == np.dtype(f.dtype)
  side = contract.target_side
  if side is F.DECODER:  # decoder inputs are the targets shifted right behind 0
    np.testing.assert_array_equal(batch[side.input_tokens][:, 1:], batch[side.target_tokens][:, :-1])
    assert (batch[side.input_tokens][:, 0] == 0).all()
  else:  # a masked LM scores a subset of the tokens
    assert 0 < batch[side.loss_weights].mean() < 0.5
  cfg = C.ModelConfig(family=contract.family, vocab_size=64, d_model=16, num_layers=1, num_heads=2, d_ff=32)
  total, aux = create_model(cfg, nnx.Rngs(0)).loss(batch)
  assert np.isfinite(float(total)) and float(aux["weight_sum"]) == batch[side.loss_weights].sum()
