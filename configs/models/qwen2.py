"""Qwen2 0.5B as a preset (the config.json of Qwen/Qwen2-0.5B; Qwen/Qwen2.5-0.5B has the same
shapes). `max_len` records the 32,768-token context both model cards state; RoPE has no table.

A Llama-style decoder with biases on the q/k/v projections only: 24 x 896, 14 query and
2 key/value heads of 64, d_ff 4,864, vocab 151,936, tied embeddings, RMSNorm eps 1e-6,
RoPE theta 1,000,000, no sliding window (`use_sliding_window: false`).
"""

from t5x_like.config import ModelConfig


def qwen2_0_5b() -> ModelConfig:
  return ModelConfig(
      family="decoder", vocab_size=151_936, d_model=896, num_layers=24, num_heads=14, num_kv_heads=2,
      head_dim=64, d_ff=4864, mlp_activation="swiglu", norm="rmsnorm", norm_position="pre",
      norm_eps=1e-6, position="rope", rope_theta=1_000_000.0, max_len=32_768, tie_embeddings=True,
      use_bias=False, qkv_bias=True, dropout_rate=0.0, init_std=0.02)


PRESETS = {"qwen2_0_5b": qwen2_0_5b}
