"""`data.cross_document=true`: causal-LM rows are the EOS-joined token stream cut every
seq_len tokens, one segment per row (positions 0..L-1), checked against numpy; other
objectives refuse it with a plain error."""

import numpy as np
import pytest
from data_streams import lines_of, take  # tests/data/data_streams.py

from t5x_like import config as C
from t5x_like.data import pipeline

L, BATCH = 32, 4


def test_rows_are_the_eos_joined_stream_cut_every_seq_len(make_cfg, spm_path, corpus, tok):
  lines = lines_of(corpus["eval"])
  cfg = make_cfg(cross_document=True, seq_len=L)
  batches = take(pipeline.make_dataset(cfg, files=corpus["eval"], tokenizer_path=spm_path, batch_size=BATCH,
                                       shuffle=False, repeat=False))
  stream = np.concatenate([tok.encode(line) + [tok.eos_id] for line in lines]).astype(np.int32)
  n_rows = -(-len(stream) // L)
  want = np.zeros(n_rows * L, np.int32)
  want[:len(stream)] = stream
  want = want.reshape(n_rows, L)
  valid = (np.arange(n_rows * L) < len(stream)).reshape(n_rows, L)
  got = {k: np.concatenate([b[k] for b in batches])[:n_rows] for k in batches[0]}
  assert all((np.concatenate([b[k] for b in batches])[n_rows:] == 0).all() for k in got)  # batch padding
  np.testing.assert_array_equal(got["decoder_target_tokens"], want)
  np.testing.assert_array_equal(got["decoder_segment_ids"], valid.astype(np.int32))
  np.testing.assert_array_equal(got["decoder_positions"], np.where(valid, np.arange(L), 0))
  np.testing.assert_array_equal(got["decoder_loss_weights"], valid.astype(np.float32))
  shifted = np.concatenate([np.zeros((n_rows, 1), np.int32), want[:, :-1]], axis=1)  # BOS 0 starts each row
  inputs = np.where(valid, shifted, 0)
  np.testing.assert_array_equal(got["decoder_input_tokens"], inputs)


def test_training_rows_are_full_single_segments(make_cfg, spm_path, corpus):
  batch = take(pipeline.make_dataset(make_cfg(cross_document=True), files=corpus["train"],
                                     tokenizer_path=spm_path, batch_size=BATCH), 1)[0]
  np.testing.assert_array_equal(batch["decoder_segment_ids"], 1)
  np.testing.assert_array_equal(batch["decoder_positions"], np.tile(np.arange(L), (BATCH, 1)))


@pytest.mark.parametrize("objective, family", [("prefix_lm", "decoder"), ("span_corruption", "encoder_decoder")])
def test_objectives_that_already_join_documents_refuse_it(objective, family):
  with pytest.raises(C.ConfigError, match=r"data\.cross_document=true applies to objective causal_lm or mlm; "
                                          rf"{objective} rows already join documents"):
    C.validate(C.replace(C.Config(), model=dict(family=family, vocab_size=1024),
                         data=dict(source="text", train_files="x.txt", tokenizer_path="t.model",
                                   objective=objective, cross_document=True)))
