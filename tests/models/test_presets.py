"""Size presets: parameter counts from abstract models against formulas and published figures.

Counts come from `nnx.eval_shape` (nothing is allocated). Each preset is checked three ways:
  1. exactly against the architecture written out as a formula here;
  2. exactly against the reference implementation's count: `num_parameters()` of the HF
     `transformers` 5.23 class built from the released config on the meta device
     (GPT2LMHeadModel, BertForMaskedLM, T5ForConditionalGeneration, LlamaForCausalLM,
     MistralForCausalLM, Qwen2ForCausalLM; for T5 v1.1 plus the vocab x d_model lm_head,
     which transformers 5 ties on a fresh build);
  3. loosely against the rounded figure the authors published (or, for T5 v1.1, whose
     release states no counts, the size class).
Documented differences from the published figures: BERT's are for BertModel (pooler, no
MLM head), ours is the MLM model (head, no pooler): 2*d_model + vocab more; the GPT-2 paper
quoted 117M-1542M before a counting fix, the released names are 124M-1558M; the T5 paper
rounds v1.0 large (737.7M) to 770M.
"""

import math
import os

import jax
import pytest
from flax import nnx

from t5x_like.config import load_model_preset
from t5x_like.models import create_model

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "models")


def preset(module: str, name: str):
  return load_model_preset(os.path.join(CONFIGS, f"{module}.py"), name)


def count(cfg) -> int:
  abstract = nnx.eval_shape(lambda: create_model(cfg, nnx.Rngs(0)))
  return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.to_pure_dict(nnx.split(abstract)[1])))


# ------------------------------------------------------------------ formulas


def gpt2_formula(V, P, L, d):
  attn = d * 3 * d + 3 * d + d * d + d  # fused qkv, output projection, biases
  mlp = d * 4 * d + 4 * d + 4 * d * d + d
  return V * d + P * d + L * (attn + mlp + 2 * 2 * d) + 2 * d


def bert_mlm_formula(V, P, T, L, d):
  embeddings = (V + P + T) * d + 2 * d
  layer = 4 * (d * d + d) + 2 * (d * 4 * d) + 4 * d + d + 2 * 2 * d
  head = d * d + d + 2 * d + V  # transform dense, LayerNorm, output bias (projection tied)
  return embeddings + L * layer + head


def t5_formula(V, d, ff, heads, L, *, gated, tied, kv=64, buckets=32):
  inner = heads * kv
  attn, mlp = 4 * d * inner, (3 if gated else 2) * d * ff
  encoder = L * (attn + mlp + 2 * d) + d
  decoder = L * (2 * attn + mlp + 3 * d) + d
  return V * d + (0 if tied else d * V) + 2 * buckets * heads + encoder + decoder


def llama_formula(V, d, L, heads, kv_heads, head_dim, ff, *, tied=True, qkv_bias=False):
  attn = 2 * d * heads * head_dim + 2 * d * kv_heads * head_dim
  bias = (heads + 2 * kv_heads) * head_dim if qkv_bias else 0
  return V * d * (1 if tied else 2) + L * (attn + bias + 3 * d * ff + 2 * d) + d


# preset -> (formula count, HF count, published figure, relative tolerance, source)
CASES = {
    ("gpt", "gpt2_small"): (gpt2_formula(50257, 1024, 12, 768), 124_439_808, 124e6, 0.005,
                            "openai/gpt-2 release names: 124M"),
    ("gpt", "gpt2_medium"): (gpt2_formula(50257, 1024, 24, 1024), 354_823_168, 355e6, 0.005, "355M"),
    ("gpt", "gpt2_large"): (gpt2_formula(50257, 1024, 36, 1280), 774_030_080, 774e6, 0.005, "774M"),
    ("gpt", "gpt2_xl"): (gpt2_formula(50257, 1024, 48, 1600), 1_557_611_200, 1.558e9, 0.005, "1.558B"),
    ("bert", "bert_tiny"): (bert_mlm_formula(30522, 512, 2, 2, 128), 4_416_698, 4.4e6, 0.02,
                           "Turc et al. 2019 (Well-Read Students): BERT-Tiny 4.4M"),
    ("bert", "bert_base"): (bert_mlm_formula(30522, 512, 2, 12, 768), 109_514_298, 110e6, 0.02,
                           "Devlin et al. 2019: BERT-base 110M"),
    ("bert", "bert_large"): (bert_mlm_formula(30522, 512, 2, 24, 1024), 335_174_458, 340e6, 0.02,
                            "Devlin et al. 2019: BERT-large 340M"),
    ("t5", "t5_v1_1_small"): (t5_formula(32128, 512, 1024, 6, 8, gated=True, tied=False),
                              76_961_152, 77e6, 0.01, "v1.1 small; no official count, quoted as ~77M"),
    ("t5", "t5_v1_1_base"): (t5_formula(32128, 768, 2048, 12, 12, gated=True, tied=False),
                             247_577_856, 248e6, 0.01, "v1.1 base; quoted as ~248M"),
    ("t5", "t5_v1_1_large"): (t5_formula(32128, 1024, 2816, 16, 24, gated=True, tied=False),
                              783_150_080, 783e6, 0.01, "v1.1 large; quoted as ~783M"),
    ("t5", "t5_v1_1_xl"): (t5_formula(32128, 2048, 5120, 32, 24, gated=True, tied=False),
                           2_849_757_184, 3e9, 0.06, "v1.1 xl: the 3B size class"),
    ("t5", "t5_v1_0_small"): (t5_formula(32128, 512, 2048, 8, 6, gated=False, tied=True),
                              60_506_624, 60e6, 0.02, "Raffel et al. 2020: 60M"),
    ("t5", "t5_v1_0_base"): (t5_formula(32128, 768, 3072, 12, 12, gated=False, tied=True),
                             222_903_552, 220e6, 0.02, "Raffel et al. 2020: 220M"),
    ("t5", "t5_v1_0_large"): (t5_formula(32128, 1024, 4096, 16, 24, gated=False, tied=True),
                              737_668_096, 770e6, 0.05, "Raffel et al. 2020: 770M"),
    ("llama", "llama_1b"): (llama_formula(128256, 2048, 16, 32, 8, 64, 8192), 1_235_814_400, 1.23e9,
                            0.01, "meta-llama/Llama-3.2-1B model card: 1.23B"),
    ("llama", "llama3_8b"): (llama_formula(128256, 4096, 32, 32, 8, 128, 14336, tied=False), 8_030_261_248,
                             8e9, 0.01, "meta-llama/Llama-3.1-8B model card: 8B"),
    ("llama", "llama2_7b"): (llama_formula(32000, 4096, 32, 32, 32, 128, 11008, tied=False), 6_738_415_616,
                             7e9, 0.05, "Touvron et al. 2023 (Llama 2): 7B"),
    ("mistral", "mistral_7b"): (llama_formula(32000, 4096, 32, 32, 8, 128, 14336, tied=False),
                                7_241_732_096, 7e9, 0.05, "Jiang et al. 2023: a 7-billion-parameter model"),
    ("qwen2", "qwen2_0_5b"): (llama_formula(151936, 896, 24, 14, 2, 64, 4864, qkv_bias=True), 494_032_768,
                              0.49e9, 0.01, "Qwen2.5-0.5B model card: 0.49B"),
}


@pytest.mark.parametrize("key", list(CASES), ids=[name for _, name in CASES])
def test_preset_parameter_count(key):
  formula, hf, published, tol, source = CASES[key]
  n = count(preset(*key))
  assert n == formula
  assert n == hf
  assert abs(n - published) / published < tol, f"{n:,} vs {source}"


def test_presets_validate_as_configs():
  from t5x_like import config as C
  for module, name in CASES:
    cfg = C.Config(model=preset(module, name))
    cfg.data.seq_len = 512
    cfg.data.objective = C.objectives_for(cfg.model.family)[0]
    C.validate(cfg)


@pytest.mark.parametrize("key", [k for k in CASES if k[0] in ("llama", "mistral", "qwen2")],
                         ids=lambda k: k[1])
def test_llama_family_presets_are_what_their_config_json_imports_as(key):
  """Written as the HF type it fits and read back, a preset is unchanged (the type too)."""
  from t5x_like.interop.hf import FAMILIES, export_type
  cfg = preset(*key)
  hf_type = export_type(cfg)
  assert hf_type == {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2"}[key[0]]
  mapping = FAMILIES[hf_type]
  assert mapping.config_from_hf(mapping.config_to_hf(cfg)) == cfg
