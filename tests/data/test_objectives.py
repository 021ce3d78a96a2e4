"""Objectives against their definitions: BERT masking rates and what is never masked, T5
span corruption (noise density, mean span length, sentinel layout, lossless), prefix-LM
split and attention features, determinism under the seed."""

import numpy as np
import pytest
import tensorflow as tf

from t5x_like import config as C
from t5x_like.config import SpanCorruptionConfig
from t5x_like.data import objectives, pipeline, spans
from t5x_like.data.tokenizer import DataError


def _take(ds, n):
  it = ds.as_numpy_iterator()
  return [next(it) for _ in range(n)]


def _stack(batches, key):
  return np.concatenate([b[key] for b in batches])


# ---------------------------------------------------------------- masked LM


@pytest.fixture(scope="module")
def mlm_batches(corpus, spm_path, make_cfg):
  cfg = make_cfg(objective="mlm", seq_len=64, extra_ids=1)
  ds = pipeline.make_dataset(cfg, files=corpus["train"], tokenizer_path=spm_path, batch_size=32)
  return cfg, _take(ds, 40)  # 81,920 token slots


def test_mlm_rates_match_the_definition(mlm_batches, tok):
  cfg, batches = mlm_batches
  inputs, targets = _stack(batches, "encoder_input_tokens"), _stack(batches, "encoder_target_tokens")
  weights, segments = _stack(batches, "encoder_loss_weights"), _stack(batches, "encoder_segment_ids")
  specials = set(objectives.special_ids(tok))
  maskable = (segments > 0) & ~np.isin(targets, list(specials))
  selected = weights > 0
  assert not (selected & ~maskable).any(), "selected a padding or special token"
  # Unselected tokens are never changed.
  np.testing.assert_array_equal(inputs[~selected], targets[~selected])
  n_sel = selected.sum()
  assert abs(n_sel / maskable.sum() - 0.15) < 0.01, n_sel / maskable.sum()
  mask = objectives.mask_id(tok, cfg)
  assert mask == tok.vocab_size  # sentinel 0: the last id of vocab + extra_ids
  as_mask = (inputs == mask) & selected
  changed = (inputs != targets) & (inputs != mask) & selected
  kept = (inputs == targets) & selected
  assert abs(as_mask.sum() / n_sel - 0.8) < 0.02
  # A random replacement equals the original with probability ~1/#normal pieces.
  assert abs(changed.sum() / n_sel - 0.1) < 0.015
  assert abs(kept.sum() / n_sel - 0.1) < 0.015
  # Random replacements are normal pieces, never specials or the mask.
  normal = set(objectives.random_replacement_ids(tok))
  assert set(np.unique(inputs[changed]).tolist()) <= normal
  # The mask id appears nowhere else.
  assert not ((inputs == mask) & ~selected).any()


def test_mlm_targets_are_the_packed_text(corpus, spm_path, make_cfg):
  """MLM rows carry the same tokens, segments and positions as the causal-LM packing."""
  kw = dict(files=corpus["eval"], tokenizer_path=spm_path, batch_size=8, shuffle=False, repeat=False)
  mlm = list(pipeline.make_dataset(make_cfg(objective="mlm", extra_ids=1), **kw).as_numpy_iterator())
  lm = list(pipeline.make_dataset(make_cfg(objective="causal_lm"), **kw).as_numpy_iterator())
  assert len(mlm) == len(lm)
  for a, b in zip(mlm, lm, strict=True):
    np.testing.assert_array_equal(a["encoder_target_tokens"], b["decoder_target_tokens"])
    np.testing.assert_array_equal(a["encoder_segment_ids"], b["decoder_segment_ids"])
    np.testing.assert_array_equal(a["encoder_positions"], b["decoder_positions"])


def test_mlm_is_deterministic_under_the_seed(corpus, spm_path, make_cfg):
  def first(seed):
    cfg = make_cfg(objective="mlm", extra_ids=1, seed=seed)
    return _take(pipeline.make_dataset(cfg, files=corpus["train"], tokenizer_path=spm_path,
                                       batch_size=8, shuffle=False), 2)

  a, b, c = first(0), first(0), first(1)
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x["encoder_input_tokens"], y["encoder_input_tokens"])
  assert not np.array_equal(a[0]["encoder_loss_weights"], c[0]["encoder_loss_weights"])


def test_mlm_uses_a_mask_piece_when_the_tokenizer_has_one(corpus, tmp_path, make_cfg):
  from t5x_like.data import tokenizer
  path = tokenizer.train_sentencepiece(corpus["train"], 400, str(tmp_path / "m.model"),
                                       user_defined_symbols=("<mask>",), hard_vocab_limit=False)
  tok = tokenizer.Tokenizer(path)
  assert objectives.mask_id(tok, make_cfg(objective="mlm", extra_ids=0)) == tok.sp.PieceToId("<mask>")
  # "<mask>" is a user-defined piece, so it is never itself selected for masking.
  assert tok.sp.PieceToId("<mask>") in objectives.special_ids(tok)


def test_mlm_without_mask_token_is_a_plain_error(tok, make_cfg):
  with pytest.raises(DataError, match="extra_ids"):
    objectives.mask_id(tok, make_cfg(objective="mlm", extra_ids=0))


# ---------------------------------------------------------------- span corruption


def _uncorrupt(inputs, targets, vocab_size):
  """Rebuilds the raw tokens from T5 inputs and targets (both ending with EOS)."""
  spans, cur = {}, None
  for t in targets[:-1]:
    if t >= vocab_size:
      cur = t
      spans[cur] = []
    else:
      spans[cur].append(t)
  out = []
  for t in inputs[:-1]:
    out.extend(spans[t] if t in spans else [t])
  return out


def test_noise_mask_density_and_span_length():
  cfg = SpanCorruptionConfig(noise_density=0.15, mean_span_length=3.0)
  rng = np.random.default_rng(0)
  noise, total, spans = 0, 0, 0
  for i in range(400):
    n = int(rng.integers(20, 400))
    m = objectives.noise_mask(tf.constant(n), cfg, tf.constant([7, i], tf.int64)).numpy()
    assert m.shape == (n,) and not m[0] and m[-1]  # starts with non-noise, ends with noise
    n_noise = int(m.sum())
    assert n_noise == min(max(round(n * 0.15), 1), n - 1)  # exact count per example
    starts = int((m & ~np.concatenate([[False], m[:-1]])).sum())
    assert starts == max(round(n_noise / 3.0), 1)
    noise, total, spans = noise + n_noise, total + n, spans + starts
  assert abs(noise / total - 0.15) < 0.005
  assert abs(noise / spans - 3.0) < 0.1


def test_noise_mask_counts_match_span_lengths_exactly():
  # Lengths where float32 arithmetic rounds differently from Python's float64 (190 * 0.15 is
  # 28.499... in float64 but 28.5 -> 29 in float32): the row sizes come from span_lengths,
  # so one extra noise token would cut the EOS off a target.
  for density, mean_span, n in [(0.15, 3.0, 190), (0.15, 3.0, 350), (0.15, 3.0, 670),
                                (0.15, 3.0, 568), (0.5, 3.0, 70), (0.3, 2.5, 130)]:
    cfg = SpanCorruptionConfig(noise_density=density, mean_span_length=mean_span)
    m = objectives.noise_mask(tf.constant(n), cfg, tf.constant([3, n], tf.int64)).numpy()
    starts = int((m & ~np.concatenate([[False], m[:-1]])).sum())
    inputs_len, targets_len = spans.span_lengths(n, density, mean_span)
    assert (n - m.sum() + starts + 1, m.sum() + starts + 1) == (inputs_len, targets_len), (density, n)


def test_span_lengths_are_random_and_positive():
  cfg = SpanCorruptionConfig(noise_density=0.3, mean_span_length=4.0)
  lengths = []
  for i in range(200):
    m = objectives.noise_mask(tf.constant(100), cfg, tf.constant([1, i], tf.int64)).numpy()
    edges = np.flatnonzero(np.diff(np.concatenate([[0], m.astype(int), [0]])))
    lengths.extend((edges[1::2] - edges[::2]).tolist())
  assert min(lengths) >= 1 and len(set(lengths)) > 4  # varied, not a fixed span length
  assert abs(np.mean(lengths) - 30 / 8) < 0.01  # 30 noise tokens in round(30/4)=8 spans


def test_span_corruption_rows_are_lossless_with_t5_sentinels(corpus, spm_path, tok, make_cfg):
  cfg = make_cfg(objective="span_corruption", seq_len=64, extra_ids=16)
  base = objectives.sentinel_base(tok, cfg)
  assert base == tok.vocab_size + 16
  kw = dict(files=corpus["eval"], tokenizer_path=spm_path, batch_size=8, shuffle=False, repeat=False)
  batches = list(pipeline.make_dataset(cfg, **kw).as_numpy_iterator())
  lm = list(pipeline.make_dataset(make_cfg(objective="causal_lm"), **kw).as_numpy_iterator())
  stream = np.concatenate([b["decoder_target_tokens"][b["decoder_segment_ids"] > 0] for b in lm])
  rebuilt, in_fill, n_rows = [], 0, 0
  for b in batches:
    for r in range(b["encoder_input_tokens"].shape[0]):
      eseg, dseg = b["encoder_segment_ids"][r], b["decoder_segment_ids"][r]
      for s in range(1, int(eseg.max()) + 1):
        inputs = b["encoder_input_tokens"][r][eseg == s]
        targets = b["decoder_target_tokens"][r][dseg == s]
        assert inputs[-1] == tok.eos_id and targets[-1] == tok.eos_id
        sent_in = [t for t in inputs if t >= tok.vocab_size]
        sent_out = [t for t in targets if t >= tok.vocab_size]
        # Sentinels count down from the end of the vocabulary, in the same order on both sides.
        assert sent_in == list(range(base - 1, base - 1 - len(sent_in), -1))
        assert sent_out == sent_in and targets[0] == base - 1
        rebuilt.extend(_uncorrupt(inputs.tolist(), targets.tolist(), tok.vocab_size))
        # Decoder inputs are the targets shifted right behind 0.
        dec_in = b["decoder_input_tokens"][r][dseg == s]
        np.testing.assert_array_equal(dec_in, np.concatenate([[0], targets[:-1]]))
      if eseg.max() > 0:
        in_fill, n_rows = in_fill + (eseg > 0).mean(), n_rows + 1
  # Every token of every document comes back, in order (EOS separators included).
  np.testing.assert_array_equal(np.array(rebuilt), stream)
  assert in_fill / n_rows > 0.95  # concatenated pieces fill the encoder rows


def test_span_corruption_needs_enough_sentinels(corpus, spm_path, make_cfg):
  cfg = make_cfg(objective="span_corruption", seq_len=256, extra_ids=4)
  # A config check (validation.check_objective), which the pipeline runs too.
  with pytest.raises(C.ConfigError, match="extra_ids"):
    pipeline.make_dataset(cfg, files=corpus["train"], tokenizer_path=spm_path, batch_size=4)


def test_span_lengths_follow_t5():
  # T5's published setting: 568 raw tokens -> 512 inputs and 114 targets at density 0.15.
  assert spans.span_lengths(568, 0.15, 3.0) == (512, 114)
  cfg = C.replace(C.Config(), data=dict(seq_len=512, noise_density=0.15, mean_noise_span_length=3.0)).data
  assert spans.span_raw_len(cfg) == 568 and spans.span_targets_len(cfg) == 114


# ---------------------------------------------------------------- prefix LM


def test_prefix_lm_features(corpus, spm_path, make_cfg):
  cfg = make_cfg(objective="prefix_lm", seq_len=64)
  kw = dict(files=corpus["eval"], tokenizer_path=spm_path, batch_size=8, shuffle=False, repeat=False)
  batches = list(pipeline.make_dataset(cfg, **kw).as_numpy_iterator())
  fractions = []
  for b in batches:
    for r in range(b["decoder_target_tokens"].shape[0]):
      seg = b["decoder_segment_ids"][r]
      for s in range(1, int(seg.max()) + 1):
        w = b["decoder_loss_weights"][r][seg == s]
        causal = b["decoder_causal_attention"][r][seg == s]
        tokens = b["decoder_target_tokens"][r][seg == s]
        k = int(np.argmax(w > 0))  # prefix length: the loss starts at the first suffix token
        assert k >= 1 and (w[:k] == 0).all() and (w[k:] == 1).all()
        # Bidirectional on BOS and the prefix tokens as inputs: positions 0..k.
        assert (causal[:k + 1] == 1).all() and (causal[k + 1:] == 0).all()
        np.testing.assert_array_equal(b["decoder_input_tokens"][r][seg == s],
                                      np.concatenate([[0], tokens[:-1]]))
        fractions.append((k - 0.5) / (len(tokens) - 1))
    assert (b["decoder_causal_attention"][b["decoder_segment_ids"] == 0] == 0).all()
  # The split point is uniform over 1..n-1: the normalised midpoint averages 0.5.
  assert len(fractions) > 100 and abs(np.mean(fractions) - 0.5) < 0.05


def test_prefix_lm_prefix_sees_itself_but_not_the_suffix(corpus, spm_path, make_cfg):
  """Through the model: a later prefix token changes an earlier prefix position's logits,
  a suffix token changes no prefix position."""
  from flax import nnx

  from t5x_like.config import ModelConfig
  from t5x_like.models import create_model

  cfg = make_cfg(objective="prefix_lm", seq_len=32)
  for b in pipeline.make_dataset(cfg, files=corpus["eval"], tokenizer_path=spm_path, batch_size=1,
                                 shuffle=False, repeat=False).as_numpy_iterator():
    k = int(np.argmax(b["decoder_loss_weights"][0] > 0))
    if 3 <= k <= 28:  # a row with a prefix of 3+ tokens and 3+ suffix tokens after it
      break
  seg = b["decoder_segment_ids"][0]
  assert seg[k + 2] == 1 and k >= 3
  model = create_model(ModelConfig(vocab_size=1024, d_model=32, num_layers=1, num_heads=2, d_ff=64),
                       nnx.Rngs(0))
  base = np.asarray(model(b))

  def changed(pos):
    b2 = dict(b, decoder_input_tokens=b["decoder_input_tokens"].copy())
    b2["decoder_input_tokens"][0, pos] = (b2["decoder_input_tokens"][0, pos] + 7) % 500 + 3
    return np.abs(np.asarray(model(b2)) - base).max(axis=-1)[0]

  assert changed(k)[0] > 1e-6  # the last prefix input reaches position 0
  assert changed(k + 2)[:k + 2].max() == 0  # a suffix input reaches no earlier position


@pytest.mark.parametrize("objective", ["causal_lm", "mlm", "prefix_lm", "span_corruption"])
def test_rows_are_full_on_documents_of_varied_lengths(corpus, spm_path, tok, make_cfg, objective):
  # The built-in documents run from 5 to 60 words (about 8 to 150 tokens) against rows of
  # 128: each objective must still put real tokens in at least 95% of the slots.
  cfg = make_cfg(objective=objective, seq_len=128, extra_ids=32)
  ds = pipeline.make_dataset(cfg, files=corpus["train"], tokenizer_path=spm_path, batch_size=16)
  batches = _take(ds, 8)
  side = "decoder" if objective in ("causal_lm", "prefix_lm") else "encoder"
  segments = _stack(batches, f"{side}_segment_ids")
  assert (segments > 0).mean() >= 0.95, (objective, (segments > 0).mean())
  if objective == "span_corruption":  # the targets are sized to what 128 inputs produce
    assert (_stack(batches, "decoder_segment_ids") > 0).mean() >= 0.9
