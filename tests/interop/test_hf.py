"""Parity with Hugging Face `transformers` (PyTorch, random weights, no downloads).

Each family: build a tiny HF model, save it as safetensors, import it, compare fp32
logits (1e-4), export it back and check every tensor round-trips bit for bit and that
`from_pretrained` reads our export into the same model.
"""

import os

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from hf_random import randomise  # noqa: E402

from t5x_like.config import ConfigError  # noqa: E402
from t5x_like.interop import config_from_hf, export_hf, hf_token_ids, import_hf, load_hf  # noqa: E402
from t5x_like.interop.safetensors_io import TensorReader  # noqa: E402
from t5x_like.models import create_model  # noqa: E402

V = 101  # vocabulary; odd on purpose (no divisibility luck)


def _hf_model(kind):
  T = transformers
  if kind == "gpt2":
    cfg = T.GPT2Config(vocab_size=V, n_positions=24, n_embd=32, n_layer=2, n_head=4,
                       bos_token_id=0, eos_token_id=0)
    return randomise(T.GPT2LMHeadModel(cfg), 0.2)
  if kind == "bert":
    cfg = T.BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=24)
    return randomise(T.BertForMaskedLM(cfg), 0.2)
  # Few buckets and a short max distance so 20 tokens reach the log-spaced and clipped buckets.
  t5 = dict(vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=3,
            num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=12,
            decoder_start_token_id=0)
  if kind == "t5_v1_0":
    return randomise(T.T5ForConditionalGeneration(T.T5Config(feed_forward_proj="relu", **t5)), 0.2)
  model = T.T5ForConditionalGeneration(
      T.T5Config(feed_forward_proj="gated-gelu", tie_word_embeddings=False, **t5))
  # transformers 5 ties every fresh T5 head; real v1.1 checkpoints store their own lm_head.
  model.lm_head.weight = torch.nn.Parameter(torch.empty(V, 32))
  return randomise(model, 0.2)


def _batches(kind, rng):
  if kind == "gpt2":
    ids = rng.integers(0, V, (2, 20))
    return {"input_ids": torch.tensor(ids)}, {"decoder_input_tokens": jnp.asarray(ids)}
  if kind == "bert":
    ids, types = rng.integers(1, V, (2, 20)), rng.integers(0, 2, (2, 20))
    return ({"input_ids": torch.tensor(ids), "token_type_ids": torch.tensor(types)},
            {"encoder_input_tokens": jnp.asarray(ids), "encoder_token_type_ids": jnp.asarray(types)})
  ids, labels = rng.integers(2, V, (2, 20)), rng.integers(2, V, (2, 18))
  shifted = np.pad(labels[:, :-1], ((0, 0), (1, 0)))  # decoder_start_token_id = 0
  return ({"input_ids": torch.tensor(ids), "labels": torch.tensor(labels).contiguous()},
          {"encoder_input_tokens": jnp.asarray(ids), "decoder_input_tokens": jnp.asarray(shifted)})


def _ours(cfg, params):
  graphdef, state = nnx.split(create_model(cfg, nnx.Rngs(0)))
  nnx.replace_by_pure_dict(state, params)
  return nnx.merge(graphdef, state)


KINDS = ["gpt2", "bert", "t5_v1_0", "t5_v1_1"]


@pytest.fixture(scope="module", params=KINDS)
def saved(request, tmp_path_factory):
  torch.manual_seed(0)
  model = _hf_model(request.param)
  path = str(tmp_path_factory.mktemp(request.param))
  model.save_pretrained(path, safe_serialization=True)
  return request.param, model, path


def test_logits_match_transformers(saved):
  kind, hf_model, path = saved
  cfg, params = load_hf(path)
  torch_batch, our_batch = _batches(kind, np.random.default_rng(1))
  with torch.no_grad():
    want = hf_model(**torch_batch).logits.numpy()
  got = np.asarray(jax.jit(lambda b: _ours(cfg, params)(b))(our_batch))
  assert got.shape == want.shape
  diff = float(np.abs(got - want).max())
  print(f"{kind}: max |ours - transformers| = {diff:.3g} (logits up to {np.abs(want).max():.3g})")
  assert diff < 1e-4


def test_export_round_trips_bit_exactly(saved, tmp_path):
  kind, hf_model, path = saved
  cfg, params = load_hf(path)
  export_hf(params, cfg, str(tmp_path), token_ids=hf_token_ids(path))
  original, exported = TensorReader(path), TensorReader(str(tmp_path))
  assert exported.keys() == original.keys()
  for name in original.keys():
    a, b = original.get(name), exported.get(name)
    assert a.dtype == b.dtype and a.shape == b.shape, name
    assert np.array_equal(a, b), name
  # Our config.json maps back to the same architecture, and transformers reads the export.
  again = config_from_hf(str(tmp_path))
  assert again == cfg
  # The special token ids survive too (GPT-2's bos/eos, BERT's pad, T5's pad/eos/start).
  written = transformers.AutoConfig.from_pretrained(str(tmp_path))
  for key in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
    assert getattr(written, key, None) == getattr(hf_model.config, key, None), key
  generation = transformers.GenerationConfig.from_pretrained(str(tmp_path))
  assert generation.eos_token_id == hf_model.config.eos_token_id
  reloaded = type(hf_model).from_pretrained(str(tmp_path)).eval()
  torch_batch, _ = _batches(kind, np.random.default_rng(2))
  with torch.no_grad():
    np.testing.assert_array_equal(reloaded(**torch_batch).logits.numpy(),
                                  hf_model(**torch_batch).logits.numpy())


def test_import_rejects_a_config_that_does_not_fit(saved):
  kind, _, path = saved
  cfg = config_from_hf(path)
  cfg.d_ff *= 2
  with pytest.raises(ConfigError, match="d_ff"):
    import_hf(path, cfg=cfg)
  cfg = config_from_hf(path)
  cfg.scan_layers, cfg.dtype = False, "bfloat16"  # how the model runs may differ
  reference = import_hf(path)
  jax.tree.map(np.testing.assert_array_equal, import_hf(path, cfg=cfg), reference)


@pytest.mark.slow  # tests/decoding/test_hf_generate.py checks T5 infer against generate in 8 s
def test_t5_greedy_predict_matches_generate(tmp_path):
  model = _hf_model("t5_v1_1")
  model.save_pretrained(str(tmp_path), safe_serialization=True)
  cfg, params = load_hf(str(tmp_path))
  ids = np.random.default_rng(3).integers(2, V, (2, 9))
  with torch.no_grad():  # no KV cache: transformers' cache assumes as many decoder layers as encoder
    want = model.generate(torch.tensor(ids), max_new_tokens=6, do_sample=False, num_beams=1,
                          use_cache=False).numpy()
  got = np.asarray(_ours(cfg, params).predict({"encoder_input_tokens": jnp.asarray(ids)},
                                               max_new_tokens=6, eos_id=1))
  want = want[:, 1:]  # drop decoder_start_token_id
  np.testing.assert_array_equal(got[:, :want.shape[1]], want)
  assert not got[:, want.shape[1]:].any()  # generate stops once every row has ended
