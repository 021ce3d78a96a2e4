"""Language identification, offline: py3langid (a maintained fork of langid.py whose
model, 97 languages, ships inside the wheel; 4.5 MB, numpy only) from the `clean` extra.
fastText's lid.176 models are downloaded at run time and lingua's wheels are far larger,
so neither is used. Without py3langid `data stats` leaves the language mix out and
`clean` refuses a `languages` filter with the install line."""

from __future__ import annotations

from t5x_like.errors import ConfigError

_MAX_CHARS = 2000  # the first characters decide: the classifier is linear in the input


def available() -> bool:
  try:
    import py3langid  # noqa: F401
  except ImportError:
    return False
  return True


def require() -> None:
  if not available():
    raise ConfigError("the languages filter needs py3langid (offline language id): "
                      "pip install -e '.[clean]', or drop --set languages=...")


def detect(text: str) -> str:
  """ISO 639-1 code of the text's most likely language."""
  import py3langid
  return py3langid.classify(text[:_MAX_CHARS])[0]


__all__ = ["available", "detect", "require"]
