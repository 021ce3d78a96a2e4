"""T5 (`T5ForConditionalGeneration`, v1.0 and v1.1) <-> EncoderDecoder.

HF T5 keeps the relative-bias table in layer 0 of each stack and shares it with the other
layers, exactly like our one table per stack. The head:
  * v1.0: tied to `shared`, decoder output scaled by d_model**-0.5 (`tie_word_embeddings`
    true or absent);
  * v1.1: separate `lm_head.weight`, no scaling (`tie_word_embeddings: false`).
transformers 5 builds every T5 with a tied head and records the scaling separately
(`scale_decoder_outputs`); a checkpoint's head is therefore judged by whether it stores an
`lm_head.weight` that differs from `shared.weight`.
"""

from __future__ import annotations

import numpy as np

from t5x_like.config import ConfigError, ModelConfig
from t5x_like.interop.mapping import Rule, linear, same

MODEL_TYPE = "t5"
ARCHITECTURE = "T5ForConditionalGeneration"
# Special token ids this family's config.json and generation_config.json carry.
TOKEN_ID_KEYS = ("pad_token_id", "eos_token_id", "decoder_start_token_id")
ARCH_FIELDS = ("family", "vocab_size", "d_model", "num_layers", "num_decoder_layers", "num_heads",
               "num_kv_heads", "head_dim", "d_ff", "mlp_activation", "gelu_approximate", "norm",
               "norm_position", "norm_eps", "position", "relative_buckets", "relative_max_distance",
               "tie_embeddings", "rescale_decoder_output", "use_bias", "attention_scale")
# feed_forward_proj -> (mlp_activation, gelu_approximate); HF runs gated-gelu with gelu_new.
_FF = {"relu": ("relu", True), "gated-gelu": ("gated_gelu", True), "gelu": ("gelu", False),
       "gelu_new": ("gelu", True), "gated-silu": ("swiglu", True)}


def config_from_hf(hf: dict, reader=None) -> ModelConfig:
  ff = hf.get("feed_forward_proj", "relu")
  if ff not in _FF:
    raise ConfigError(f"T5 feed_forward_proj={ff!r} is not supported; use one of {', '.join(_FF)}")
  head = reader is not None and "lm_head.weight" in reader and not np.array_equal(
      reader.get("lm_head.weight"), reader.get("shared.weight"))
  rescale = hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False)
  if head and rescale:
    raise ConfigError("this T5 checkpoint has a separate lm_head but scales the decoder output; "
                      "that combination is not supported")
  return ModelConfig(
      family="encoder_decoder", vocab_size=hf["vocab_size"], d_model=hf["d_model"],
      num_layers=hf["num_layers"], num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
      num_heads=hf["num_heads"], head_dim=hf["d_kv"], d_ff=hf["d_ff"], mlp_activation=_FF[ff][0],
      gelu_approximate=_FF[ff][1], norm="rmsnorm", norm_position="pre",
      norm_eps=hf.get("layer_norm_epsilon", 1e-6), position="relative",
      relative_buckets=hf.get("relative_attention_num_buckets", 32),
      relative_max_distance=hf.get("relative_attention_max_distance", 128),
      tie_embeddings=not head, rescale_decoder_output=rescale, use_bias=False, attention_scale=1.0,
      dropout_rate=hf.get("dropout_rate", 0.0))


def _feed_forward_proj(cfg: ModelConfig) -> str:
  for name, (act, approx) in _FF.items():
    if cfg.mlp_activation == act and (approx == cfg.gelu_approximate or "gelu" not in act):
      return name
  raise ConfigError(f"mlp_activation={cfg.mlp_activation!r} with gelu_approximate="
                    f"{cfg.gelu_approximate} has no T5 feed_forward_proj")


def config_to_hf(cfg: ModelConfig) -> dict:
  expressible = (cfg.family == "encoder_decoder" and cfg.position == "relative"
                 and cfg.norm == "rmsnorm" and cfg.norm_position == "pre" and not cfg.use_bias
                 and cfg.num_kv_heads in (0, cfg.num_heads) and cfg.attention_scale == 1.0)
  if not expressible:
    raise ConfigError("only T5-style encoder-decoders (relative bias, pre-RMSNorm, no biases, "
                      "attention_scale=1.0, full multi-head attention) export as T5")
  if not cfg.tie_embeddings and cfg.rescale_decoder_output:
    raise ConfigError("HF T5 cannot express an untied head with rescale_decoder_output=True")
  return {
      "architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "vocab_size": cfg.vocab_size,
      "d_model": cfg.d_model, "d_kv": cfg.head_dim or cfg.d_model // cfg.num_heads, "d_ff": cfg.d_ff,
      "num_layers": cfg.num_layers, "num_decoder_layers": cfg.num_decoder_layers or cfg.num_layers,
      "num_heads": cfg.num_heads, "relative_attention_num_buckets": cfg.relative_buckets,
      "relative_attention_max_distance": cfg.relative_max_distance,
      "layer_norm_epsilon": cfg.norm_eps, "feed_forward_proj": _feed_forward_proj(cfg),
      "dropout_rate": cfg.dropout_rate, "is_encoder_decoder": True,
      # A tied head without scaling is written as an untied copy (see rules), which every
      # transformers version reads the same way.
      "tie_word_embeddings": cfg.tie_embeddings and cfg.rescale_decoder_output,
      "scale_decoder_outputs": cfg.rescale_decoder_output, "dtype": "float32",
  }


def prefix(names) -> str:
  return ""


def _stack_rules(side: str, blocks: list[tuple[str, str, str]], mlp_layer: int,
                 cfg: ModelConfig) -> list[Rule]:
  h, b = f"{side}.block.{{i}}.layer.", f"{side}/blocks/"
  out = []
  for ours, layer, theirs in blocks:
    out += [same(b + f"{ours}_norm/scale", h + f"{layer}.layer_norm.weight")]
    out += [linear(b + f"{ours}/w{x}", h + f"{layer}.{theirs}.{x}.weight") for x in "qkv"]
    out += [linear(b + f"{ours}/wo", h + f"{layer}.{theirs}.o.weight", in_axes=2)]
  ff = h + f"{mlp_layer}.DenseReluDense."
  out.append(same(b + "mlp_norm/scale", h + f"{mlp_layer}.layer_norm.weight"))
  if cfg.mlp_activation in ("gated_gelu", "swiglu"):
    out += [linear(b + "mlp/wi", ff + "wi_0.weight"), linear(b + "mlp/wg", ff + "wi_1.weight")]
  else:
    out.append(linear(b + "mlp/wi", ff + "wi.weight"))
  out.append(linear(b + "mlp/wo", ff + "wo.weight"))
  return out


def rules(cfg: ModelConfig, p: str = "", export: bool = False) -> list[Rule]:
  bias = "block.0.layer.0.SelfAttention.relative_attention_bias.weight"
  out = [
      same("embed/embedding", "shared.weight"),
      same("encoder_rel_bias/table", f"encoder.{bias}"),
      same("decoder_rel_bias/table", f"decoder.{bias}"),
      same("encoder_norm/scale", "encoder.final_layer_norm.weight"),
      same("decoder_norm/scale", "decoder.final_layer_norm.weight"),
  ]
  out += _stack_rules("encoder", [("self_attn", "0", "SelfAttention")], 1, cfg)
  out += _stack_rules("decoder", [("self_attn", "0", "SelfAttention"),
                                  ("cross_attn", "1", "EncDecAttention")], 2, cfg)
  if not cfg.tie_embeddings:
    out.append(linear("head", "lm_head.weight"))
  elif export and not cfg.rescale_decoder_output:
    out.append(same("embed/embedding", "lm_head.weight"))
  return out


def ignored(name: str, cfg: ModelConfig) -> bool:
  """Per-stack copies of `shared`, the unused cross-attention bias table, a tied head."""
  return (name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
          or name.endswith("EncDecAttention.relative_attention_bias.weight")
          or (cfg.tie_embeddings and name == "lm_head.weight"))
