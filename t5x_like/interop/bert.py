"""BERT (`BertForMaskedLM`) <-> EncoderOnly with post-LayerNorm, token types and the MLM head.

Not carried over: the pooler and the next-sentence head (`BertForPreTraining`), which
masked-LM pretraining does not use; they are skipped on import and absent on export.
"""

from __future__ import annotations

from t5x_like.config import ConfigError, ModelConfig
from t5x_like.interop.mapping import Rule, folded, linear, same

MODEL_TYPE = "bert"
ARCHITECTURE = "BertForMaskedLM"
# Special token ids this family's config.json and generation_config.json carry.
TOKEN_ID_KEYS = ("pad_token_id",)
ARCH_FIELDS = ("family", "vocab_size", "d_model", "num_layers", "num_heads", "num_kv_heads",
               "head_dim", "d_ff", "mlp_activation", "gelu_approximate", "norm", "norm_position",
               "norm_eps", "position", "max_len", "type_vocab_size", "embed_norm", "mlm_head",
               "tie_embeddings", "use_bias", "attention_scale")
_ACT = {"gelu": ("gelu", False), "gelu_new": ("gelu", True), "gelu_pytorch_tanh": ("gelu", True),
        "relu": ("relu", True)}


def config_from_hf(hf: dict, reader=None) -> ModelConfig:
  if hf.get("position_embedding_type", "absolute") != "absolute":
    raise ConfigError("only BERT with absolute position embeddings is supported")
  act = hf.get("hidden_act", "gelu")
  if act not in _ACT:
    raise ConfigError(f"BERT hidden_act={act!r} is not supported; use one of {', '.join(_ACT)}")
  return ModelConfig(
      family="encoder", vocab_size=hf["vocab_size"], d_model=hf["hidden_size"],
      num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
      d_ff=hf["intermediate_size"], mlp_activation=_ACT[act][0], gelu_approximate=_ACT[act][1],
      norm="layernorm", norm_position="post", norm_eps=hf.get("layer_norm_eps", 1e-12),
      position="learned", max_len=hf.get("max_position_embeddings", 512),
      type_vocab_size=hf.get("type_vocab_size", 2), embed_norm=True, mlm_head=True,
      tie_embeddings=hf.get("tie_word_embeddings", True), use_bias=True,
      dropout_rate=hf.get("hidden_dropout_prob", 0.0), init_std=hf.get("initializer_range", 0.02))


def config_to_hf(cfg: ModelConfig) -> dict:
  expressible = (cfg.family == "encoder" and cfg.position == "learned" and cfg.norm == "layernorm"
                 and cfg.norm_position == "post" and cfg.use_bias and cfg.embed_norm and cfg.mlm_head
                 and cfg.type_vocab_size > 0 and cfg.mlp_activation in ("gelu", "relu")
                 and cfg.num_kv_heads in (0, cfg.num_heads) and cfg.head_dim in (0, cfg.d_model // cfg.num_heads)
                 and cfg.attention_scale in (0.0, (cfg.d_model // cfg.num_heads) ** -0.5))
  if not expressible:
    raise ConfigError("only BERT-style encoders (learned positions, token types, post-LayerNorm, "
                      "embedding norm, MLM head, biases, gelu/relu MLP) export as BERT")
  act = "relu" if cfg.mlp_activation == "relu" else ("gelu_new" if cfg.gelu_approximate else "gelu")
  return {
      "architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "vocab_size": cfg.vocab_size,
      "hidden_size": cfg.d_model, "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.d_ff, "hidden_act": act,
      "max_position_embeddings": cfg.max_len, "type_vocab_size": cfg.type_vocab_size,
      "layer_norm_eps": cfg.norm_eps, "tie_word_embeddings": cfg.tie_embeddings,
      "hidden_dropout_prob": cfg.dropout_rate, "attention_probs_dropout_prob": 0.0,
      "initializer_range": cfg.init_std, "position_embedding_type": "absolute",
      "dtype": "float32",
  }


def prefix(names) -> str:
  """`BertForMaskedLM` saves the encoder under `bert.`; a bare `BertModel` has no prefix."""
  return "bert." if "bert.embeddings.word_embeddings.weight" in names else ""


def rules(cfg: ModelConfig, p: str = "bert.", export: bool = False) -> list[Rule]:
  e, h, b = f"{p}embeddings.", f"{p}encoder.layer.{{i}}.", "stack/blocks/"
  out = [
      same("embed/embedding", e + "word_embeddings.weight"),
      same("pos_embed/table", e + "position_embeddings.weight"),
      same("type_embed/embedding", e + "token_type_embeddings.weight"),
      same("embed_norm/scale", e + "LayerNorm.weight"),
      same("embed_norm/bias", e + "LayerNorm.bias"),
  ]
  for ours, theirs in (("wq", "query"), ("wk", "key"), ("wv", "value")):
    out.append(linear(b + f"self_attn/{ours}", h + f"attention.self.{theirs}.weight"))
    out.append(folded(b + f"self_attn/b{ours[1]}", h + f"attention.self.{theirs}.bias", in_axes=0))
  out += [
      linear(b + "self_attn/wo", h + "attention.output.dense.weight", in_axes=2),
      same(b + "self_attn/bo", h + "attention.output.dense.bias"),
      same(b + "self_attn_norm/scale", h + "attention.output.LayerNorm.weight"),
      same(b + "self_attn_norm/bias", h + "attention.output.LayerNorm.bias"),
      linear(b + "mlp/wi", h + "intermediate.dense.weight"),
      same(b + "mlp/bi", h + "intermediate.dense.bias"),
      linear(b + "mlp/wo", h + "output.dense.weight"),
      same(b + "mlp/bo", h + "output.dense.bias"),
      same(b + "mlp_norm/scale", h + "output.LayerNorm.weight"),
      same(b + "mlp_norm/bias", h + "output.LayerNorm.bias"),
      linear("mlm_dense", "cls.predictions.transform.dense.weight"),
      same("mlm_dense_bias", "cls.predictions.transform.dense.bias"),
      same("mlm_norm/scale", "cls.predictions.transform.LayerNorm.weight"),
      same("mlm_norm/bias", "cls.predictions.transform.LayerNorm.bias"),
      same("output_bias", "cls.predictions.bias"),
  ]
  if not cfg.tie_embeddings:
    out.append(linear("head", "cls.predictions.decoder.weight"))
  return out


def ignored(name: str, cfg: ModelConfig) -> bool:
  """Pooler, NSP head, position-id buffers, and copies of tied or shared tensors."""
  return (".pooler." in name or name.startswith(("pooler.", "cls.seq_relationship."))
          or name.endswith("position_ids") or name == "cls.predictions.decoder.bias"
          or (cfg.tie_embeddings and name == "cls.predictions.decoder.weight"))
