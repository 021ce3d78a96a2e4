"""GPT-2 (`GPT2LMHeadModel`) <-> DecoderOnly with learned positions, LayerNorm and biases.

GPT-2 stores dense weights as Conv1D, `[in, out]`, and fuses q, k, v into `c_attn`.
"""

from __future__ import annotations

from t5x_like.config import ConfigError, ModelConfig
from t5x_like.interop.mapping import Rule, folded, fused, linear, same

MODEL_TYPE = "gpt2"
ARCHITECTURE = "GPT2LMHeadModel"
# Special token ids this family's config.json and generation_config.json carry.
TOKEN_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")
# Fields read from config.json; a caller's config must agree on these.
ARCH_FIELDS = ("family", "vocab_size", "d_model", "num_layers", "num_heads", "num_kv_heads",
               "head_dim", "d_ff", "mlp_activation", "gelu_approximate", "norm", "norm_position",
               "norm_eps", "position", "max_len", "tie_embeddings", "use_bias", "attention_scale")
_GELU = {"gelu_new": True, "gelu_pytorch_tanh": True, "gelu": False}


def config_from_hf(hf: dict, reader=None) -> ModelConfig:
  if not hf.get("scale_attn_weights", True) or hf.get("scale_attn_by_inverse_layer_idx", False):
    raise ConfigError("GPT-2 variants that change the attention scale are not supported")
  act = hf.get("activation_function", "gelu_new")
  if act not in _GELU and act != "relu":
    raise ConfigError(f"GPT-2 activation_function={act!r} is not supported; use gelu_new, gelu or relu")
  d = hf["n_embd"]
  return ModelConfig(
      family="decoder", vocab_size=hf["vocab_size"], d_model=d, num_layers=hf["n_layer"],
      num_heads=hf["n_head"], d_ff=hf.get("n_inner") or 4 * d,
      mlp_activation="relu" if act == "relu" else "gelu", gelu_approximate=_GELU.get(act, True),
      norm="layernorm", norm_position="pre", norm_eps=hf.get("layer_norm_epsilon", 1e-5),
      position="learned", max_len=hf["n_positions"],
      tie_embeddings=hf.get("tie_word_embeddings", True), use_bias=True,
      dropout_rate=hf.get("resid_pdrop", 0.0), init_std=hf.get("initializer_range", 0.02))


def config_to_hf(cfg: ModelConfig) -> dict:
  expressible = (cfg.family == "decoder" and cfg.position == "learned" and cfg.norm == "layernorm"
                 and cfg.norm_position == "pre" and cfg.use_bias and cfg.mlp_activation in ("gelu", "relu")
                 and cfg.num_kv_heads in (0, cfg.num_heads) and cfg.head_dim in (0, cfg.d_model // cfg.num_heads)
                 and cfg.attention_scale in (0.0, (cfg.d_model // cfg.num_heads) ** -0.5))
  if not expressible:
    raise ConfigError("only GPT-2-style decoders (learned positions, pre-LayerNorm, biases, gelu/relu "
                      "MLP, full multi-head attention) export as GPT-2")
  act = "relu" if cfg.mlp_activation == "relu" else ("gelu_new" if cfg.gelu_approximate else "gelu")
  return {
      "architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "vocab_size": cfg.vocab_size,
      "n_embd": cfg.d_model, "n_layer": cfg.num_layers, "n_head": cfg.num_heads, "n_inner": cfg.d_ff,
      "n_positions": cfg.max_len, "activation_function": act, "layer_norm_epsilon": cfg.norm_eps,
      "tie_word_embeddings": cfg.tie_embeddings, "resid_pdrop": cfg.dropout_rate,
      "embd_pdrop": cfg.dropout_rate, "attn_pdrop": 0.0, "initializer_range": cfg.init_std,
      "scale_attn_weights": True, "dtype": "float32",
  }


def prefix(names) -> str:
  """`GPT2LMHeadModel` saves under `transformer.`; a bare `GPT2Model` has no prefix."""
  return "transformer." if "transformer.wte.weight" in names else ""


def rules(cfg: ModelConfig, p: str = "transformer.", export: bool = False) -> list[Rule]:
  h, b = f"{p}h.{{i}}.", "stack/blocks/"
  out = [
      same("embed/embedding", f"{p}wte.weight"),
      same("pos_embed/table", f"{p}wpe.weight"),
      same("final_norm/scale", f"{p}ln_f.weight"),
      same("final_norm/bias", f"{p}ln_f.bias"),
      same(b + "self_attn_norm/scale", h + "ln_1.weight"),
      same(b + "self_attn_norm/bias", h + "ln_1.bias"),
      fused((b + "self_attn/wq", b + "self_attn/wk", b + "self_attn/wv"), h + "attn.c_attn.weight"),
      fused((b + "self_attn/bq", b + "self_attn/bk", b + "self_attn/bv"), h + "attn.c_attn.bias",
            in_axes=0),
      folded(b + "self_attn/wo", h + "attn.c_proj.weight", in_axes=2),
      same(b + "self_attn/bo", h + "attn.c_proj.bias"),
      same(b + "mlp_norm/scale", h + "ln_2.weight"),
      same(b + "mlp_norm/bias", h + "ln_2.bias"),
      same(b + "mlp/wi", h + "mlp.c_fc.weight"),
      same(b + "mlp/bi", h + "mlp.c_fc.bias"),
      same(b + "mlp/wo", h + "mlp.c_proj.weight"),
      same(b + "mlp/bo", h + "mlp.c_proj.bias"),
  ]
  if not cfg.tie_embeddings:
    out.append(linear("head", "lm_head.weight"))
  return out


def ignored(name: str, cfg: ModelConfig) -> bool:
  """Tensors safe to skip: causal-mask buffers of old checkpoints and the tied head."""
  return name.endswith((".attn.bias", ".attn.masked_bias")) or (
      cfg.tie_embeddings and name == "lm_head.weight")
