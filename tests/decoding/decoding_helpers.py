"""Tiny models and a jitted `generate` shared by the decoding tests (a plain module, not a
conftest: test directories share the name `conftest` on sys.path)."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from t5x_like import config as C
from t5x_like import features as F
from t5x_like.decoding.generate import generate
from t5x_like.models import create_model

V = 61  # odd vocabulary: no divisibility luck

DECODER_STYLES = {
    # Llama-family details on the cache path too: Qwen2's q/k/v biases, Llama 3's RoPE
    # rescaling (at a short original length, so it changes the frequencies used here) and
    # Mistral's sliding window (shorter than prompt + new tokens, so it hides keys).
    "rope_gqa": dict(position="rope", norm="rmsnorm", mlp_activation="swiglu", num_kv_heads=2,
                     qkv_bias=True, rope_scaling="llama3", rope_scaling_factor=4.0,
                     rope_original_max_len=16, sliding_window=5),
    "learned": dict(position="learned", norm="layernorm", mlp_activation="gelu", use_bias=True,
                    max_len=32, tie_embeddings=False),
    "relative": dict(position="relative", relative_buckets=8, relative_max_distance=16),
}
T5_STYLE = dict(position="relative", attention_scale=1.0, mlp_activation="gated_gelu",
                tie_embeddings=False, rescale_decoder_output=False, relative_buckets=8,
                relative_max_distance=16)


def tiny_cfg(family="decoder", **fields):
  cfg = C.ModelConfig(family=family, vocab_size=V, d_model=32, num_layers=2, num_heads=4, d_ff=64,
                      num_decoder_layers=3 if family == "encoder_decoder" else 0)
  for k, v in fields.items():
    setattr(cfg, k, v)
  return cfg


def random_params(cfg, seed=0, std=0.3) -> dict:
  """Normal(0, std) weights (norm scales 1 + that) from numpy. The model's own init is
  eager and takes about 10 s per new shape on a CPU; this takes milliseconds. A std of
  0.3 keeps logits far apart, so a token choice is never a float tie between paths."""
  _, abstract = nnx.split(nnx.eval_shape(lambda: create_model(cfg, nnx.Rngs(0))))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    value = rng.normal(0.0, std, leaf.shape).astype(np.float32)
    return value + 1.0 if path[-1].key == "scale" else value

  return jax.tree_util.tree_map_with_path(fill, nnx.to_pure_dict(abstract))


def with_params(cfg, params):
  graphdef, state = nnx.split(nnx.eval_shape(lambda: create_model(cfg, nnx.Rngs(0))))
  nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
  return nnx.merge(graphdef, state)


def tiny_model(family="decoder", seed=0, **fields):
  cfg = tiny_cfg(family, **fields)
  return with_params(cfg, random_params(cfg, seed))


def prompts(rows=((5, 9, 12, 4, 7), (8, 3), (30, 31, 32, 33, 34, 35))):
  """Left-aligned prompts of different lengths in an 8-wide buffer."""
  tokens = np.zeros((len(rows), 8), np.int32)
  for i, r in enumerate(rows):
    tokens[i, :len(r)] = r
  return {F.PROMPT_TOKENS: jnp.asarray(tokens),
          F.PROMPT_LENGTHS: jnp.asarray([len(r) for r in rows], jnp.int32)}


def encoder_inputs():
  return {F.ENCODER_INPUT_TOKENS: jnp.asarray([[5, 9, 12, 4, 7, 1], [8, 3, 22, 1, 0, 0],
                                               [40, 2, 2, 17, 1, 0]], jnp.int32)}


_COMPILED = {}


def run(model, batch, options, rng=None, cached=True):
  """`generate` under jit (eager loops would retrace every step), as numpy. One compile
  per model, options and path for the whole session: compiles are most of the time."""
  key = (id(model), options, cached)
  if key not in _COMPILED:
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda s, b, r: generate(nnx.merge(graphdef, s), b, options, r, cached=cached))
    _COMPILED[key] = (fn, state, model)  # the model kept alive so its id stays unique
  fn, state, _ = _COMPILED[key]
  out = fn(state, batch, jax.random.key(0) if rng is None else rng)
  return np.asarray(out.tokens), np.asarray(out.scores)


_MODELS = {}


def model_for(style: str):
  """The session's tiny model of a style (built once: building one takes seconds)."""
  if style not in _MODELS:
    _MODELS[style] = (tiny_model("encoder_decoder", **T5_STYLE) if style == "t5"
                      else tiny_model(**DECODER_STYLES[style]))
  return _MODELS[style]
