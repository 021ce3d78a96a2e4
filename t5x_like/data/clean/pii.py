"""PII masking: e-mail addresses become <EMAIL>, IPv4 addresses <IP> and phone numbers <PHONE>, so the model
learns where such things occur without learning the things. A phone number here is 9 to
15 digits in groups separated by spaces, dots or dashes, optionally with a +country code
and an area code in parentheses; shorter digit groups (years, prices, dates) stay."""

from __future__ import annotations

import re

from t5x_like.data.clean.markup import EMAIL

_IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\w|\.\d)")
_PHONE = re.compile(r"(?<![\w+.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){2,4}(?![\w])")


def _phone(m: re.Match) -> str:
  digits = sum(c.isdigit() for c in m.group(0))
  return "<PHONE>" if 9 <= digits <= 15 else m.group(0)


def mask_pii(text: str) -> str:
  if "@" in text:
    text = EMAIL.sub("<EMAIL>", text)
  if "." in text:
    text = _IPV4.sub("<IP>", text)  # before phone numbers: 192.168.100.200 has 12 digits
  return _PHONE.sub(_phone, text)


__all__ = ["mask_pii"]
