"""Random weights for the tiny Hugging Face models the parity tests build (a plain module:
each test directory's `conftest` would shadow another's on sys.path)."""

import torch


def randomise(model, std=0.2):
  """HF's 0.02 init makes every logit near zero, which would hide mapping mistakes."""
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen) * std
      p.copy_(1.0 + noise if p.ndim == 1 and name.endswith("weight") else noise)  # norm scales near 1
  return model.eval()
