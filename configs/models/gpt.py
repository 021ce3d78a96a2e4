"""GPT-2 size presets (Radford et al. 2019), matching the released checkpoints.

Learned positions (1,024), pre-LayerNorm, biases, tanh-approximate GELU ("gelu_new"),
tied embeddings, vocab 50,257. The vocabulary is kept exact so HF weights import
unchanged; for training from scratch, padding it to a multiple of 128 (50,304) makes the
embedding and logits matmuls friendlier to accelerators.
"""

from t5x_like.config import ModelConfig


def _gpt2(num_layers: int, d_model: int, num_heads: int) -> ModelConfig:
  return ModelConfig(
      family="decoder", vocab_size=50_257, d_model=d_model, num_layers=num_layers,
      num_heads=num_heads, d_ff=4 * d_model, mlp_activation="gelu", gelu_approximate=True,
      norm="layernorm", norm_position="pre", norm_eps=1e-5, position="learned", max_len=1024,
      tie_embeddings=True, use_bias=True, dropout_rate=0.1, init_std=0.02)


def gpt2_small() -> ModelConfig:
  return _gpt2(12, 768, 12)


def gpt2_medium() -> ModelConfig:
  return _gpt2(24, 1024, 16)


def gpt2_large() -> ModelConfig:
  return _gpt2(36, 1280, 20)


def gpt2_xl() -> ModelConfig:
  return _gpt2(48, 1600, 25)


PRESETS = {"gpt2_small": gpt2_small, "gpt2_medium": gpt2_medium, "gpt2_large": gpt2_large,
           "gpt2_xl": gpt2_xl}
