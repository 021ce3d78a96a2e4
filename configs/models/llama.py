"""Llama-style decoder presets with the shapes of released Meta checkpoints.

All are RoPE, RMSNorm, SwiGLU, pre-norm, no biases; shapes from each release's config.json
(which `t5x-like convert --from-hf` reads to the same config, token ids aside):
  * llama_1b: Llama 3.2 1B (meta-llama/Llama-3.2-1B): 16 x 2048, 32 query and 8 key/value
    heads of 64, d_ff 8192, vocab 128,256, tied embeddings, eps 1e-5, theta 500,000 with
    "llama3" rope scaling (factor 32, low/high frequency factors 1 and 4, original context
    8,192), 131,072 positions.
  * llama3_8b: Llama 3.1 8B (meta-llama/Llama-3.1-8B): 32 x 4096, 32 query and 8 key/value
    heads of 128, d_ff 14,336, vocab 128,256, untied head, eps 1e-5, theta 500,000 with
    "llama3" rope scaling (factor 8, 1, 4, 8,192), 131,072 positions.
  * llama2_7b: Llama 2 7B (Touvron et al. 2023; meta-llama/Llama-2-7b-hf): 32 x 4096,
    32 heads (no grouping), d_ff 11,008, vocab 32,000, untied head, eps 1e-5, theta 10,000,
    4,096 positions.
`max_len` only records the context length: RoPE has no position table.
"""

from t5x_like.config import ModelConfig

_LLAMA = dict(family="decoder", mlp_activation="swiglu", norm="rmsnorm", norm_position="pre",
              norm_eps=1e-5, position="rope", use_bias=False, dropout_rate=0.0, init_std=0.02)


def llama_1b() -> ModelConfig:
  return ModelConfig(
      **_LLAMA, vocab_size=128_256, d_model=2048, num_layers=16, num_heads=32, num_kv_heads=8,
      head_dim=64, d_ff=8192, rope_theta=500_000.0, rope_scaling="llama3", rope_scaling_factor=32.0,
      rope_low_freq_factor=1.0, rope_high_freq_factor=4.0, rope_original_max_len=8192,
      max_len=131_072, tie_embeddings=True)


def llama3_8b() -> ModelConfig:
  return ModelConfig(
      **_LLAMA, vocab_size=128_256, d_model=4096, num_layers=32, num_heads=32, num_kv_heads=8,
      head_dim=128, d_ff=14_336, rope_theta=500_000.0, rope_scaling="llama3", rope_scaling_factor=8.0,
      rope_low_freq_factor=1.0, rope_high_freq_factor=4.0, rope_original_max_len=8192,
      max_len=131_072, tie_embeddings=False)


def llama2_7b() -> ModelConfig:
  return ModelConfig(
      **_LLAMA, vocab_size=32_000, d_model=4096, num_layers=32, num_heads=32, num_kv_heads=32,
      head_dim=128, d_ff=11_008, rope_theta=10_000.0, max_len=4096, tie_embeddings=False)


PRESETS = {"llama_1b": llama_1b, "llama3_8b": llama3_8b, "llama2_7b": llama2_7b}
