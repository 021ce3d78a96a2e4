"""Mixtures: each component (its own source and files) packs its own rows, which are drawn
in proportion to the weights. Rows are tagged by component through disjoint corpora
(counting runs, sentences, sums), so the observed rates can be checked against the
weights; the mixed stream is seeded and resumes from an iterator checkpoint."""

import json
import random

import numpy as np
import pytest
import tensorflow as tf

from t5x_like import config as config_lib
from t5x_like.config import Config, ConfigError
from t5x_like.data import pipeline
from t5x_like.data.tokenizer import DataError

BATCH, WEIGHTS = 64, (0.5, 0.3, 0.2)
_ADJ, _NOUN = ("small", "big", "red", "old", "tiny"), ("fox", "dog", "cat", "bird", "king")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
  """Three disjoint corpora, one per source kind: text, JSONL and TFRecord."""
  rng = random.Random(0)
  out = tmp_path_factory.mktemp("mix")
  counting = [" ".join(["count :"] + [str(k + j) for j in range(rng.randint(2, 4))] + ["."])
              for k in (rng.randint(0, 19) for _ in range(100))]
  sentences = [f"the {rng.choice(_ADJ)} {rng.choice(_NOUN)} sees a {rng.choice(_NOUN)} ."
               for _ in range(60)]
  sums = [f"{a} + {b} = {a + b} ." for a, b in ((rng.randint(0, 19), rng.randint(0, 19))
                                                 for _ in range(80))]
  for i in range(2):
    (out / f"count-{i}.txt").write_text("\n".join(counting[i::2]) + "\n")
  (out / "sentences.jsonl").write_text("".join(json.dumps({"text": s}) + "\n" for s in sentences))
  with tf.io.TFRecordWriter(str(out / "sums.tfrecord")) as w:
    for s in sums:
      feature = {"text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[s.encode()]))}
      w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
  mixture = [{"weight": WEIGHTS[0], "train_files": str(out / "count-*.txt")},
             {"weight": WEIGHTS[1], "source": "jsonl", "train_files": str(out / "sentences.jsonl")},
             {"weight": WEIGHTS[2], "source": "tfrecord", "train_files": str(out / "sums.tfrecord")}]
  return mixture, (counting[0::2] + counting[1::2], sentences, sums)  # in reading order


def _make(make_cfg, spm_path, mixture, seed=0, repeat=True, **kw):
  cfg = make_cfg(mixture=mixture, seed=seed, **kw)
  return pipeline.make_dataset(cfg, files="", tokenizer_path=spm_path, batch_size=BATCH,
                               shuffle=repeat, repeat=repeat)


def _component_of_rows(batches, tok, docs):
  """The component index of every row: the one whose documents own its pieces."""
  pieces = [set(i for d in ds for i in tok.encode(d)) for ds in docs]
  own = [p - set().union(*(q for q in pieces if q is not p)) for p in pieces]
  out = []
  for b in batches:
    for row in b["decoder_target_tokens"]:
      hits = [i for i, ids in enumerate(own) if ids & set(row.tolist())]
      assert len(hits) == 1, hits  # a row never mixes components
      out.append(hits[0])
  return out


def test_rates_follow_the_weights_and_the_stream_is_seeded(make_cfg, spm_path, tok, corpora, tmp_path):
  mixture, docs = corpora
  it = iter(_make(make_cfg, spm_path, mixture))
  batches = [{k: v.numpy() for k, v in next(it).items()} for _ in range(20)]
  # The checkpoint holds every component's position and the sampler's generator.
  path = tf.train.Checkpoint(iterator=it).save(str(tmp_path / "mix"))
  batches += [{k: v.numpy() for k, v in next(it).items()} for _ in range(10)]  # 1,920 rows
  rates = np.bincount(_component_of_rows(batches, tok, docs), minlength=3) / (30 * BATCH)
  # Binomial standard error at 1,920 rows is at most 1.15 points: 3.5 points is 3 sigma.
  np.testing.assert_allclose(rates, WEIGHTS, atol=0.035)
  # A second pipeline with the same seed yields the same stream; restored, it continues the
  # first one's from the checkpoint.
  again = iter(_make(make_cfg, spm_path, mixture))
  for want in batches[:3]:
    np.testing.assert_array_equal(next(again)["decoder_target_tokens"].numpy(),
                                  want["decoder_target_tokens"])
  tf.train.Checkpoint(iterator=again).restore(path).assert_consumed()
  for want in batches[20:30]:
    np.testing.assert_array_equal(next(again)["decoder_target_tokens"].numpy(),
                                  want["decoder_target_tokens"])


def test_eval_reads_every_document_of_every_component_once(make_cfg, spm_path, tok, corpora):
  """Each component's rows, in stream order, continue exactly its own documents (in file
  order, each once): every row fits one component's expected token stream, and at the end
  every stream is used up."""
  mixture, docs = corpora
  expected = [[t for d in ds for t in tok.encode(d) + [tok.eos_id]] for ds in docs]
  used = [0, 0, 0]
  for b in _make(make_cfg, spm_path, mixture, repeat=False).as_numpy_iterator():
    for row, seg in zip(b["decoder_target_tokens"], b["decoder_segment_ids"], strict=True):
      tokens = row[seg > 0].tolist()
      if not tokens:
        continue  # padding of the last batch
      fits = [c for c in range(3) if expected[c][used[c]:used[c] + len(tokens)] == tokens]
      assert len(fits) == 1, fits
      used[fits[0]] += len(tokens)
  assert used == [len(e) for e in expected]


def test_components_must_yield_the_same_features(make_cfg, spm_path, corpora):
  mixture, _ = corpora
  mismatched = [mixture[0], {**mixture[1], "seq_len": 16}]
  with pytest.raises(DataError, match=r"data\.mixture\[1\] \(objective=causal_lm, seq_len=16\) "
                                      r"yields rows .* but data\.mixture\[0\] yields"):
    _make(make_cfg, spm_path, mismatched)


def test_mixture_entries_are_validated():
  def check(mixture, **data):
    values = {"source": "text", "tokenizer_path": "spm.model", "mixture": mixture, **data}
    return config_lib.validate(config_lib.replace(Config(), data=values))

  ok = [{"weight": 2, "train_files": "a/*.txt"}, {"weight": 1, "source": "tfds", "tfds_name": "x"}]
  weights = [w for w, _ in config_lib.mixture_components(check(ok).data)]
  assert weights == [2.0, 1.0]
  cases = [
      ([{"weight": 1, "train_file": "a"}], r"unknown key 'train_file' in data\.mixture\[0\]; did you "
                                           r"mean 'train_files'\?"),
      ([{"weight": 0, "train_files": "a"}], r"data\.mixture\[0\] needs a positive number \"weight\""),
      ([{"train_files": "a"}], r"needs a positive number \"weight\", got None"),
      ([{"weight": 1, "train_files": "a", "tokenizer_path": "b"}], r"sets 'tokenizer_path', which all"),
      ([{"weight": 1, "train_files": "a", "seq_len": "64"}], r"data\.mixture\[0\]\.seq_len' expects int"),
      ([{"weight": 1, "source": "tfrecord"}], r"data\.mixture\[0\] \(source='tfrecord'\) needs train_files"),
      ([{"weight": 1, "train_files": "a", "objective": "mlm"}], r"feeds the encoder family"),
      (["a/*.txt"], r"data\.mixture\[0\] must be a dict"),
  ]
  for mixture, pattern in cases:
    with pytest.raises(ConfigError, match=pattern):
      check(mixture)
  with pytest.raises(ConfigError, match=r"data\.mixture is set but data\.source='synthetic'"):
    check(ok, source="synthetic")
