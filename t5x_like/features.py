"""The batch contract: every feature a model family reads, with its dtype, its row length
and its role. This is the only place the feature names are spelled (a test checks it);
objectives produce these dicts, models consume them, and the trainer, `data show`, the
benchmarks and the tests read the contract instead of guessing names.

Names follow T5X: `{encoder,decoder}_{input_tokens,target_tokens,segment_ids,positions,
loss_weights}`. Rows are packed: segment ids number the examples of a row from 1 (0 is
padding) and positions restart at 0 for each. Each family owns its contract
(`LanguageModel.contract`), as T5X models own their feature converter.
"""

from __future__ import annotations

import dataclasses

import numpy as np

ENCODER_INPUT_TOKENS = "encoder_input_tokens"
ENCODER_TARGET_TOKENS = "encoder_target_tokens"
ENCODER_SEGMENT_IDS = "encoder_segment_ids"
ENCODER_POSITIONS = "encoder_positions"
ENCODER_LOSS_WEIGHTS = "encoder_loss_weights"
ENCODER_TOKEN_TYPE_IDS = "encoder_token_type_ids"  # BERT sentence A/B; optional
# One class id per row, `[batch, 1]`: sequence (pair) classification and next-sentence
# prediction (0: B continues A, 1: B is from another document, as BERT numbers them).
ENCODER_CLASS_LABELS = "encoder_class_labels"
DECODER_INPUT_TOKENS = "decoder_input_tokens"
DECODER_TARGET_TOKENS = "decoder_target_tokens"
DECODER_SEGMENT_IDS = "decoder_segment_ids"
DECODER_POSITIONS = "decoder_positions"
DECODER_LOSS_WEIGHTS = "decoder_loss_weights"
DECODER_CAUSAL_ATTENTION = "decoder_causal_attention"  # prefix LM: 1 on the bidirectional prefix
# What `predict` reads: left-aligned prompts and their lengths (decoder-only generation).
PROMPT_TOKENS = "prompt_tokens"
PROMPT_LENGTHS = "prompt_lengths"


@dataclasses.dataclass(frozen=True)
class Side:
  """The features of one side of a model's input (the encoder or the decoder)."""

  name: str
  input_tokens: str
  target_tokens: str
  segment_ids: str
  positions: str
  loss_weights: str

  def owns(self, feature: str) -> bool:
    return feature in dataclasses.astuple(self)[1:]


ENCODER = Side("encoder", ENCODER_INPUT_TOKENS, ENCODER_TARGET_TOKENS, ENCODER_SEGMENT_IDS,
               ENCODER_POSITIONS, ENCODER_LOSS_WEIGHTS)
DECODER = Side("decoder", DECODER_INPUT_TOKENS, DECODER_TARGET_TOKENS, DECODER_SEGMENT_IDS,
               DECODER_POSITIONS, DECODER_LOSS_WEIGHTS)


@dataclasses.dataclass(frozen=True)
class Feature:
  name: str
  dtype: str  # numpy dtype name
  length: str  # "inputs" (data.seq_len), "targets" (the decoder rows of an encoder-decoder) or "row" (1)
  role: str  # inputs | targets | segments | positions | weights | attention | types | labels
  required: bool = True


def _side_features(side: Side, length: str, targets: bool) -> tuple[Feature, ...]:
  out = [Feature(side.input_tokens, "int32", length, "inputs")]
  if targets:
    out.append(Feature(side.target_tokens, "int32", length, "targets"))
  out += [Feature(side.segment_ids, "int32", length, "segments"),
          Feature(side.positions, "int32", length, "positions")]
  if targets:
    out.append(Feature(side.loss_weights, "float32", length, "weights"))
  return tuple(out)


@dataclasses.dataclass(frozen=True)
class Contract:
  """One family's batch: its features, the side whose targets and weights the loss reads,
  and the side read first (whose segment ids measure packing)."""

  family: str
  features: tuple[Feature, ...]
  target_side: Side
  first_side: Side

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(f.name for f in self.features)

  @property
  def required(self) -> tuple[str, ...]:
    return tuple(f.name for f in self.features if f.required)

  def side_of(self, feature: str) -> Side:
    return ENCODER if ENCODER.owns(feature) or feature.startswith("encoder_") else DECODER

  def lengths(self, batch: dict) -> tuple[int, int]:
    """(inputs length, targets length) of a batch; targets is 0 when the family has no
    separate target rows."""
    inputs = np.shape(batch[self.first_side.input_tokens])[1]
    separate = any(f.length == "targets" for f in self.features)
    return inputs, np.shape(batch[self.target_side.target_tokens])[1] if separate else 0

  def fake_batch(self, batch_size: int, inputs_len: int, targets_len: int = 0, *,
                 vocab_size: int = 512, seed: int = 0) -> dict:
    """Full rows of random ids (no padding) with every required feature, for tests and
    benchmarks: decoder inputs are the targets shifted right behind 0; encoder-only rows
    score a random 15% of the tokens, as MLM does."""
    rng = np.random.default_rng(seed)
    n = {"inputs": inputs_len, "targets": targets_len or inputs_len}
    tokens = {side.name: rng.integers(3, vocab_size, (batch_size, n[self._length(side)])).astype(np.int32)
              for side in (ENCODER, DECODER)}
    out = {}
    for f in self.features:
      if not f.required:
        continue
      side, length = self.side_of(f.name), n[f.length]
      if f.role in ("inputs", "targets"):
        t = tokens[side.name]
        out[f.name] = np.pad(t[:, :-1], ((0, 0), (1, 0))) if side is DECODER and f.role == "inputs" else t
      elif f.role == "segments":
        out[f.name] = np.ones((batch_size, length), np.int32)
      elif f.role == "positions":
        out[f.name] = np.broadcast_to(np.arange(length, dtype=np.int32), (batch_size, length)).copy()
      elif f.role == "weights":
        # Only a masked LM (encoder targets) scores a subset of its tokens.
        scored = rng.random((batch_size, length)) < 0.15 if side is ENCODER else np.ones((batch_size, length))
        out[f.name] = scored.astype(np.float32)
    return out

  def _length(self, side: Side) -> str:
    lengths = {f.length for f in self.features if self.side_of(f.name) is side and f.length != "row"}
    return lengths.pop() if lengths else "inputs"


DECODER_ONLY = Contract(
    "decoder",
    _side_features(DECODER, "inputs", targets=True)
    + (Feature(DECODER_CAUSAL_ATTENTION, "int32", "inputs", "attention", required=False),),
    target_side=DECODER, first_side=DECODER)
ENCODER_ONLY = Contract(
    "encoder",
    _side_features(ENCODER, "inputs", targets=True)
    + (Feature(ENCODER_TOKEN_TYPE_IDS, "int32", "inputs", "types", required=False),
       Feature(ENCODER_CLASS_LABELS, "int32", "row", "labels", required=False)),
    target_side=ENCODER, first_side=ENCODER)
ENCODER_DECODER = Contract(
    "encoder_decoder",
    _side_features(ENCODER, "inputs", targets=False) + _side_features(DECODER, "targets", targets=True),
    target_side=DECODER, first_side=ENCODER)


__all__ = [n for n in dir() if n.isupper() or n in ("Contract", "Feature", "Side")]
