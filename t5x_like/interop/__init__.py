"""Hugging Face interop: GPT-2, BERT and T5 checkpoints <-> our params dict (see hf.py)."""

from t5x_like.interop.hf import config_from_hf, export_hf, import_hf, load_hf

__all__ = ["config_from_hf", "export_hf", "import_hf", "load_hf"]
