"""Corpus preparation before tokenization: `t5x-like data clean` (normalise, strip markup,
filter by quality, deduplicate, mask PII) and `t5x-like data stats`.

The work on one document is a pure function (`document.clean_document`), so the same code
runs in a process pool on one machine (`local.py`) and in Apache Beam (`beam.py`, an
optional extra); deduplication is the only step that looks across documents, and both
engines apply the same order-independent rule (`dedup.py`), so their outputs are the same
bytes. Nothing here imports TensorFlow unless TFRecord or TFDS input/output is asked for.
"""

from t5x_like.data.clean.options import CleanOptions

__all__ = ["CleanOptions"]
