"""Generation: a KV cache per family (`prefill`/`extend` in t5x_like/models/, the cache
of one layer in t5x_like/layers/kv_cache.py), greedy decoding, sampling and beam search
(`generate.py`, `sampling.py`, `beam.py`), and the `t5x-like infer` and `score` commands
(`infer.py`, `score.py`). See docs/generation.md.

Nothing is imported here: the model families import `decoding.state`, and the commands
import the families.
"""
