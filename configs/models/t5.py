"""T5 size presets: v1.1 (small, base, large, xl) and the original v1.0 (small, base, large).

Both: relative position bias (32 buckets, max distance 128), attention scale 1.0,
pre-RMSNorm (eps 1e-6), no biases, vocab 32,128 (SentencePiece's 32,100 padded to a
multiple of 128), 64-dim heads. v1.0 (Raffel et al. 2020): relu MLP, head tied to the
embedding and fed the decoder output times d_model**-0.5. v1.1 (the t5.1.1 release):
gated GELU, separate head, no rescale, no dropout in pretraining.
"""

from t5x_like.config import ModelConfig


def _t5(d_model: int, d_ff: int, num_heads: int, num_layers: int, *, v1_1: bool) -> ModelConfig:
  return ModelConfig(
      family="encoder_decoder", vocab_size=32_128, d_model=d_model, num_layers=num_layers,
      num_decoder_layers=num_layers, num_heads=num_heads, head_dim=64, d_ff=d_ff,
      mlp_activation="gated_gelu" if v1_1 else "relu", gelu_approximate=True, norm="rmsnorm",
      norm_position="pre", norm_eps=1e-6, position="relative", relative_buckets=32,
      relative_max_distance=128, attention_scale=1.0, tie_embeddings=not v1_1,
      rescale_decoder_output=not v1_1, use_bias=False, dropout_rate=0.0 if v1_1 else 0.1)


def t5_v1_1_small() -> ModelConfig:  # note: 6 heads of 64 on a 512-wide residual stream
  return _t5(512, 1024, 6, 8, v1_1=True)


def t5_v1_1_base() -> ModelConfig:
  return _t5(768, 2048, 12, 12, v1_1=True)


def t5_v1_1_large() -> ModelConfig:
  return _t5(1024, 2816, 16, 24, v1_1=True)


def t5_v1_1_xl() -> ModelConfig:
  return _t5(2048, 5120, 32, 24, v1_1=True)


def t5_v1_0_small() -> ModelConfig:
  return _t5(512, 2048, 8, 6, v1_1=False)


def t5_v1_0_base() -> ModelConfig:
  return _t5(768, 3072, 12, 12, v1_1=False)


def t5_v1_0_large() -> ModelConfig:
  return _t5(1024, 4096, 16, 24, v1_1=False)


PRESETS = {"t5_v1_1_small": t5_v1_1_small, "t5_v1_1_base": t5_v1_1_base,
           "t5_v1_1_large": t5_v1_1_large, "t5_v1_1_xl": t5_v1_1_xl,
           "t5_v1_0_small": t5_v1_0_small, "t5_v1_0_base": t5_v1_0_base,
           "t5_v1_0_large": t5_v1_0_large}
