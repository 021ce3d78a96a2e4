"""PII masking: e-mail addresses become <EMAIL> and phone numbers <PHONE>, so the model
learns where such things occur without learning the things. A phone number here is 9 to
15 digits in groups separated by spaces, dots or dashes, optionally with a +country code
and an area code in parentheses; shorter digit groups (years, prices, dates) stay."""

from __future__ import annotations

import re

from t5x_like.data.clean.markup import EMAIL

_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){2,4}(?![\w])")


def _phone(m: re.Match) -> str:
  digits = sum(c.isdigit() for c in m.group(0))
  return "<PHONE>" if 9 <= digits <= 15 else m.group(0)


def mask_pii(text: str) -> str:
  if "@" in text:
    text = EMAIL.sub("<EMAIL>", text)
  return _PHONE.sub(_phone, text)


__all__ = ["mask_pii"]
