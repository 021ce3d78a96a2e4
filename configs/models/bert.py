"""BERT size presets (Devlin et al. 2019; BERT-Tiny from Turc et al. 2019), as MLM encoders.

Shapes follow the released uncased checkpoints (vocab 30,522, 512 positions, 2 token
types). Ours is `BertForMaskedLM`: the MLM head is included, the pooler is not; parameter
counts are in docs/models.md and checked in tests/models/test_presets.py.
"""

from t5x_like.config import ModelConfig


def _bert(num_layers: int, d_model: int, num_heads: int) -> ModelConfig:
  return ModelConfig(
      family="encoder", vocab_size=30_522, d_model=d_model, num_layers=num_layers,
      num_heads=num_heads, d_ff=4 * d_model, mlp_activation="gelu", gelu_approximate=False,
      norm="layernorm", norm_position="post", norm_eps=1e-12, position="learned", max_len=512,
      type_vocab_size=2, embed_norm=True, mlm_head=True, tie_embeddings=True, use_bias=True,
      dropout_rate=0.1, init_std=0.02)


def bert_tiny() -> ModelConfig:  # google/bert_uncased_L-2_H-128_A-2
  return _bert(2, 128, 2)


def bert_base() -> ModelConfig:
  return _bert(12, 768, 12)


def bert_large() -> ModelConfig:
  return _bert(24, 1024, 16)


PRESETS = {"bert_tiny": bert_tiny, "bert_base": bert_base, "bert_large": bert_large}
