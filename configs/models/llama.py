"""A Llama-style decoder at 1B scale, with the shapes of Llama 3.2 1B.

RoPE (theta 500,000), RMSNorm, SwiGLU, no biases, grouped-query attention (32 query and
8 key/value heads of 64), tied embeddings, vocab 128,256. Llama 3.2 also rescales RoPE
frequencies for long contexts ("llama3" rope scaling); ours does not, which only matters
beyond the 8,192-token original context.
"""

from t5x_like.config import ModelConfig


def llama_1b() -> ModelConfig:
  return ModelConfig(
      family="decoder", vocab_size=128_256, d_model=2048, num_layers=16, num_heads=32,
      num_kv_heads=8, head_dim=64, d_ff=8192, mlp_activation="swiglu", norm="rmsnorm",
      norm_position="pre", norm_eps=1e-5, position="rope", rope_theta=500_000.0, max_len=8192,
      tie_embeddings=True, use_bias=False, dropout_rate=0.0, init_std=0.02)


PRESETS = {"llama_1b": llama_1b}
