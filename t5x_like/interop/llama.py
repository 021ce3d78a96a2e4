"""Llama-family decoders (`LlamaForCausalLM`, `MistralForCausalLM`, `Qwen2ForCausalLM`) <->
DecoderOnly with RoPE, pre-RMSNorm, SwiGLU and grouped-query attention.

The three store the same tensors under the same names; only their configs differ:
  * llama (Llama 2 and 3): `rope_theta`, optionally Llama 3.1's "llama3" frequency rescaling;
  * mistral: optionally a `sliding_window` on every layer;
  * qwen2: biases on the q, k and v projections (none on o or in the MLP).
Their q and k weights are stored for the "half" rotation layout our RoPE uses (Meta's
interleaved layout was permuted when the checkpoints were first converted), so every dense
weight maps as a plain `torch.nn.Linear`.
"""

from __future__ import annotations

from t5x_like.config import ConfigError, ModelConfig
from t5x_like.interop.mapping import Rule, folded, linear, same

ARCH_FIELDS = ("family", "vocab_size", "d_model", "num_layers", "num_heads", "num_kv_heads",
               "head_dim", "d_ff", "mlp_activation", "norm", "norm_position", "norm_eps",
               "position", "rope_theta", "rope_scaling", "rope_scaling_factor",
               "rope_low_freq_factor", "rope_high_freq_factor", "rope_original_max_len",
               "sliding_window", "tie_embeddings", "use_bias", "qkv_bias", "attention_scale")
# Our field -> the key of HF's "llama3" rope parameters.
_LLAMA3_KEYS = {"rope_scaling_factor": "factor", "rope_low_freq_factor": "low_freq_factor",
                "rope_high_freq_factor": "high_freq_factor",
                "rope_original_max_len": "original_max_position_embeddings"}


def _rope_from_hf(hf: dict, name: str) -> dict:
  """Our RoPE fields from either spelling of a config.json: transformers 5 writes
  `rope_parameters` (theta inside), earlier versions `rope_theta` plus `rope_scaling`; when
  both are present transformers 5 lets `rope_scaling` win, and so do we."""
  spec = dict(hf.get("rope_scaling") or hf.get("rope_parameters") or {})
  if any(isinstance(v, dict) for v in spec.values()):
    raise ConfigError(f"{name}: RoPE parameters that differ per layer type are not supported")
  if spec.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)) != 1.0:
    raise ConfigError(f"{name}: partial_rotary_factor != 1 (RoPE on part of each head) is not supported")
  out = {"rope_theta": float(spec.get("rope_theta", hf.get("rope_theta", 10_000.0)))}
  kind = spec.get("rope_type", spec.get("type", "default"))
  if kind == "default":
    return out
  if kind != "llama3":
    raise ConfigError(f"{name} rope_type={kind!r} is not supported; use default or llama3")
  spec.setdefault("original_max_position_embeddings", hf.get("max_position_embeddings"))
  missing = [k for k in _LLAMA3_KEYS.values() if spec.get(k) is None]
  if missing:
    raise ConfigError(f"{name}: llama3 rope scaling without {', '.join(missing)} in config.json")
  out["rope_scaling"] = "llama3"
  for ours, theirs in _LLAMA3_KEYS.items():
    out[ours] = int(spec[theirs]) if ours == "rope_original_max_len" else float(spec[theirs])
  return out


def _rope_to_hf(cfg: ModelConfig) -> dict:
  """Both spellings, so that transformers 4 and 5 read the same frequencies."""
  scaling = None
  if cfg.rope_scaling == "llama3":
    scaling = {"rope_type": "llama3", **{theirs: getattr(cfg, ours) for ours, theirs in _LLAMA3_KEYS.items()}}
  params = dict(scaling or {"rope_type": "default"}, rope_theta=cfg.rope_theta)
  return {"rope_theta": cfg.rope_theta, "rope_scaling": scaling, "rope_parameters": params}


class LlamaFamily:
  """One HF model type of the family; `hf.py` uses it like the gpt2/bert/t5 modules."""

  ARCH_FIELDS = ARCH_FIELDS
  TOKEN_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")

  def __init__(self, model_type: str, architecture: str, *, qkv_bias: bool, windowed: bool):
    self.MODEL_TYPE, self.ARCHITECTURE = model_type, architecture
    self.qkv_bias = qkv_bias  # qwen2: always; the others: never
    self.windowed = windowed  # mistral: sliding_window in config.json

  def _window(self, hf: dict) -> int:
    if self.windowed:
      return int(hf.get("sliding_window") or 0)
    if hf.get("use_sliding_window") and hf.get("sliding_window"):
      raise ConfigError(f"{self.MODEL_TYPE} with use_sliding_window=true is not supported (its window "
                        "covers only some layers)")
    return 0

  def config_from_hf(self, hf: dict, reader=None) -> ModelConfig:
    name = self.MODEL_TYPE
    act = hf.get("hidden_act", "silu")
    if act != "silu":
      raise ConfigError(f"{name} hidden_act={act!r} is not supported; only silu (SwiGLU)")
    if hf.get("attention_bias") or hf.get("mlp_bias"):
      raise ConfigError(f"{name} with attention_bias or mlp_bias is not supported")
    heads = hf["num_attention_heads"]
    return ModelConfig(
        family="decoder", vocab_size=hf["vocab_size"], d_model=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"], num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads, d_ff=hf["intermediate_size"],
        mlp_activation="swiglu", norm="rmsnorm", norm_position="pre",
        norm_eps=hf.get("rms_norm_eps", 1e-6), position="rope",
        max_len=hf.get("max_position_embeddings", 2048),
        tie_embeddings=hf.get("tie_word_embeddings", False), use_bias=False,
        qkv_bias=self.qkv_bias, sliding_window=self._window(hf), dropout_rate=0.0,
        init_std=hf.get("initializer_range", 0.02), **_rope_from_hf(hf, name))

  def config_to_hf(self, cfg: ModelConfig) -> dict:
    name = self.MODEL_TYPE
    kv, hd = cfg.num_kv_heads or cfg.num_heads, cfg.head_dim or cfg.d_model // cfg.num_heads
    expressible = (cfg.family == "decoder" and cfg.position == "rope" and cfg.norm == "rmsnorm"
                   and cfg.norm_position == "pre" and cfg.mlp_activation == "swiglu"
                   and not cfg.use_bias and cfg.attention_scale in (0.0, hd ** -0.5))
    if not expressible:
      raise ConfigError(f"only Llama-style decoders (RoPE, pre-RMSNorm, SwiGLU, no dense biases, "
                        f"1/sqrt(head_dim) attention scale) export as {name}")
    if cfg.qkv_bias != self.qkv_bias:
      raise ConfigError(f"{name} {'always has' if self.qkv_bias else 'has no'} q/k/v biases but "
                        f"model.qkv_bias={cfg.qkv_bias}; export it as {'llama' if self.qkv_bias else 'qwen2'}")
    if cfg.sliding_window and not self.windowed:
      raise ConfigError(f"model.sliding_window={cfg.sliding_window} exports as mistral, not {name}")
    out = {
        "architectures": [self.ARCHITECTURE], "model_type": name, "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model, "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": kv, "head_dim": hd, "hidden_act": "silu",
        "max_position_embeddings": cfg.max_len, "rms_norm_eps": cfg.norm_eps,
        "tie_word_embeddings": cfg.tie_embeddings, "initializer_range": cfg.init_std,
        "attention_dropout": 0.0, "dtype": "float32", **_rope_to_hf(cfg),
    }
    if name == "llama":
      out.update(attention_bias=False, mlp_bias=False)
    if self.windowed:
      out["sliding_window"] = cfg.sliding_window or None
    if self.qkv_bias:  # qwen2: one window setting for all layers, switched off
      out.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.num_layers)
    return out

  def prefix(self, names) -> str:
    """`*ForCausalLM` saves the decoder under `model.`; a bare `LlamaModel` has no prefix."""
    return "model." if "model.embed_tokens.weight" in names else ""

  def rules(self, cfg: ModelConfig, p: str = "model.", export: bool = False) -> list[Rule]:
    h, b = f"{p}layers.{{i}}.", "stack/blocks/"
    out = [
        same("embed/embedding", f"{p}embed_tokens.weight"),
        same("final_norm/scale", f"{p}norm.weight"),
        same(b + "self_attn_norm/scale", h + "input_layernorm.weight"),
        same(b + "mlp_norm/scale", h + "post_attention_layernorm.weight"),
    ]
    for x in "qkv":
      out.append(linear(b + f"self_attn/w{x}", h + f"self_attn.{x}_proj.weight"))
      if cfg.qkv_bias:
        out.append(folded(b + f"self_attn/b{x}", h + f"self_attn.{x}_proj.bias", in_axes=0))
    out += [
        linear(b + "self_attn/wo", h + "self_attn.o_proj.weight", in_axes=2),
        linear(b + "mlp/wi", h + "mlp.gate_proj.weight"),  # silu(x @ gate) * (x @ up)
        linear(b + "mlp/wg", h + "mlp.up_proj.weight"),
        linear(b + "mlp/wo", h + "mlp.down_proj.weight"),
    ]
    if not cfg.tie_embeddings:
      out.append(linear("head", "lm_head.weight"))
    return out

  def ignored(self, name: str, cfg: ModelConfig) -> bool:
    """RoPE frequency buffers of old checkpoints and the copy of a tied head."""
    return name.endswith("rotary_emb.inv_freq") or (cfg.tie_embeddings and name == "lm_head.weight")


LLAMA = LlamaFamily("llama", "LlamaForCausalLM", qkv_bias=False, windowed=False)
MISTRAL = LlamaFamily("mistral", "MistralForCausalLM", qkv_bias=False, windowed=True)
QWEN2 = LlamaFamily("qwen2", "Qwen2ForCausalLM", qkv_bias=True, windowed=False)
