"""Objectives as tf.data preprocessors: tokenized documents -> fixed-shape feature rows.

Each objective turns documents (1-D int32, EOS appended) into rows named like T5X
features (`{encoder,decoder}_{input_tokens,target_tokens,segment_ids,positions,
loss_weights}`), packed several documents to a row. Random choices use stateless ops
seeded by (data seed, element index), so the rows are a pure function of the seed and
the input order, and a restored iterator continues the same stream.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from t5x_like.config import DataConfig  # noqa: E402
from t5x_like.data.packing import pack_and_split, pack_blocks  # noqa: E402
from t5x_like.data.tokenizer import Tokenizer  # noqa: E402

# ---------------------------------------------------------------- causal LM


def causal_lm_features(packed: dict) -> dict:
  """Decoder features of packed rows (or batches of rows): the inputs are the targets
  shifted right by one within each segment, with 0 (pad, doubling as BOS) at each start."""
  tokens, segments, positions = (tf.convert_to_tensor(packed[k])
                                 for k in ("tokens", "segment_ids", "positions"))
  shifted = tf.concat([tf.zeros_like(tokens[..., :1]), tokens[..., :-1]], axis=-1)
  return {
      "decoder_target_tokens": tokens,
      # A segment starts where the position is 0: there the previous token is another
      # document's (or padding), which the model must not see.
      "decoder_input_tokens": tf.where(positions > 0, shifted, tf.zeros_like(shifted)),
      "decoder_segment_ids": segments,
      "decoder_positions": positions,
      "decoder_loss_weights": tf.cast(segments > 0, tf.float32),
  }


def causal_lm(docs: tf.data.Dataset, cfg: DataConfig, *, tokenizer: Tokenizer,
              seed: int) -> tf.data.Dataset:
  del tokenizer, seed  # packing is deterministic and needs no special tokens beyond EOS
  return pack_and_split(docs, cfg.seq_len).map(causal_lm_features)


def causal_lm_chunked(chunks: tf.data.Dataset, cfg: DataConfig, *, tokenizer: Tokenizer,
                      seed: int) -> tf.data.Dataset:
  del tokenizer, seed
  return pack_blocks(chunks, cfg.seq_len).map(causal_lm_features)


# Each objective turns tokenized documents into fixed-shape feature rows:
#   fn(docs, data_cfg, *, tokenizer, seed) -> Dataset of {feature: [seq_len]}
# where `docs` yields 1-D int32 documents with EOS appended.
OBJECTIVES = {"causal_lm": causal_lm}
# Optional faster forms over ragged chunks `[n_docs, (tokens)]` that yield blocks of rows
# `{feature: [n_rows, seq_len]}`; they save one dataset element per document and per row,
# about a third of the pipeline's time. `make_dataset` prefers them.
CHUNKED_OBJECTIVES = {"causal_lm": causal_lm_chunked}

__all__ = ["CHUNKED_OBJECTIVES", "OBJECTIVES", "causal_lm", "causal_lm_chunked", "causal_lm_features"]
