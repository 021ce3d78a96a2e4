"""Hugging Face interop: GPT-2, BERT, T5 and Llama-family (Llama, Mistral, Qwen2) checkpoints
<-> our params dict (see hf.py)."""

from t5x_like.interop.hf import (
  HF_TYPES,
  config_from_hf,
  export_hf,
  export_type,
  hf_token_ids,
  import_hf,
  load_hf,
  source_info,
)

__all__ = ["HF_TYPES", "config_from_hf", "export_hf", "export_type", "hf_token_ids", "import_hf", "load_hf",
           "source_info"]
