"""`generate(model, batch, options)`: the one entry point for decoding any family that
generates (`model.generates`), jit-able (the options are static).

The family reads the prompt once (`prefill`) and then takes one token per row per step
(`extend`); the search (greedy, sampling, or beam search) sees only logits and a
`DecodeState`. `cached=False` swaps in the uncached reference, which re-runs the model
over a fixed buffer at every step: the tests compare the two, the benchmark times them.
"""

from __future__ import annotations

import dataclasses
import math

import jax

from t5x_like.decoding import beam, sampling
from t5x_like.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
  max_new_tokens: int = 32
  eos_id: int = 1  # a row ends at its first EOS (included; 0s after); -1: no EOS
  temperature: float = 0.0  # 0: greedy (argmax); > 0: sampling
  top_k: int = 0  # sampling among the k most likely tokens; 0: all
  top_p: float = 1.0  # nucleus sampling mass (Holtzman et al. 2020); 1: off
  beam_size: int = 1  # > 1: beam search (no sampling)
  length_penalty: float = 0.0  # beam search: GNMT alpha (Wu et al. 2016); 0: plain log-prob
  # Decoder-only: the id read before each prompt (0 for models trained here, whose inputs
  # start with 0; None for imported GPT-2, which reads the prompt as given).
  # Encoder-decoder: the decoder start token (T5: 0; None also means 0).
  bos_id: int | None = 0

  def check(self) -> DecodeOptions:
    problems = []
    if self.max_new_tokens < 1:
      problems.append(f"max_new_tokens={self.max_new_tokens} must be at least 1")
    if not 0 <= self.temperature < math.inf:  # NaN included
      problems.append(f"temperature={self.temperature} must be >= 0 (0 is greedy)")
    if self.temperature == 0 and (self.top_k > 0 or self.top_p < 1.0):
      problems.append("top_k and top_p shape a sampled draw, and temperature 0 is greedy; set a temperature "
                      "(1.0 samples from the model's own distribution)")
    if not math.isfinite(self.length_penalty):
      problems.append(f"length_penalty={self.length_penalty} must be a finite number")
    if self.eos_id < -1:
      problems.append(f"eos_id={self.eos_id} must be a token id, or -1 for no EOS")
    if self.top_k < 0:
      problems.append(f"top_k={self.top_k} must be >= 0 (0 keeps every token)")
    if not 0.0 < self.top_p <= 1.0:  # NaN included
      problems.append(f"top_p={self.top_p} must be in (0, 1]")
    if self.beam_size < 1:
      problems.append(f"beam_size={self.beam_size} must be at least 1")
    if self.beam_size > 1 and self.sampling:
      problems.append("beam search does not sample: drop temperature/top_k/top_p or use beam_size 1")
    if problems:
      raise ConfigError("; ".join(problems))
    return self

  @property
  def sampling(self) -> bool:
    return self.temperature > 0 or self.top_k > 0 or self.top_p < 1.0


@dataclasses.dataclass(frozen=True)
class Generated:
  tokens: jax.Array  # [b, max_new_tokens]: up to and with EOS, then 0
  scores: jax.Array  # [b]: log-probability (greedy/sampling) or the beam score (log-prob / lp)


jax.tree_util.register_dataclass(Generated, data_fields=["tokens", "scores"], meta_fields=[])


def generate(model, batch: dict, options: DecodeOptions, rng: jax.Array | None = None, *,
             cached: bool = True) -> Generated:
  """Generates up to `options.max_new_tokens` per row of `batch` (the family's prompt
  features: `prompt_tokens`/`prompt_lengths`, or the encoder input)."""
  options.check()
  if not model.generates:
    raise ConfigError(f"a {model.cfg.family} model does not generate text; use a decoder or "
                      "encoder_decoder checkpoint")
  logits_bv, state = model.prefill(batch, max_new_tokens=options.max_new_tokens,
                                   bos_id=options.bos_id, cached=cached)
  if options.beam_size > 1:
    tokens, scores = beam.beam_search(
        logits_bv, state, model.extend, beam_size=options.beam_size,
        max_new_tokens=options.max_new_tokens, eos_id=options.eos_id, alpha=options.length_penalty)
  else:
    tokens, scores = sampling.sample(
        logits_bv, state, model.extend, max_new_tokens=options.max_new_tokens,
        eos_id=options.eos_id, rng=jax.random.key(0) if rng is None else rng,
        temperature=options.temperature, top_k=options.top_k, top_p=options.top_p)
  return Generated(tokens, scores)
