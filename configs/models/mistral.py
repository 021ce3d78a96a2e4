"""Mistral 7B (v0.1) as a preset (Jiang et al. 2023, "Mistral 7B", Table 1; the config.json
of mistralai/Mistral-7B-v0.1).

A Llama-style decoder (RoPE theta 10,000, RMSNorm eps 1e-5, SwiGLU, no biases, untied head)
of 32 x 4096 with 32 query and 8 key/value heads of 128, d_ff 14,336, vocab 32,000, and a
sliding window of 4,096 tokens on every layer; 32,768 positions in its config.json.
"""

from t5x_like.config import ModelConfig


def mistral_7b() -> ModelConfig:
  return ModelConfig(
      family="decoder", vocab_size=32_000, d_model=4096, num_layers=32, num_heads=32, num_kv_heads=8,
      head_dim=128, d_ff=14_336, mlp_activation="swiglu", norm="rmsnorm", norm_position="pre",
      norm_eps=1e-5, position="rope", rope_theta=10_000.0, max_len=32_768, sliding_window=4096,
      tie_embeddings=False, use_bias=False, dropout_rate=0.0, init_std=0.02)


PRESETS = {"mistral_7b": mistral_7b}
