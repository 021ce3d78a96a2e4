"""What a family carries from one decoding step to the next.

`DecodeState` has two parts, told apart by where their batch axis is, so that the search
code can reorder rows (beam search picks parents) without knowing any family:

- `layers`: per stack, arrays with a leading `layers` axis and batch second (the KV
  cache, cross-attention keys and values);
- `rows`: arrays with batch first (each row's next cache slot, encoder segment ids, or
  the token buffer of the uncached reference).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class DecodeState:
  layers: dict
  rows: dict

  def take_rows(self, index_b: jax.Array) -> DecodeState:
    """The state of rows `index_b` (repeats allowed): beams expanding or picking parents."""
    return DecodeState(
        layers=jax.tree.map(lambda a: jnp.take(a, index_b, axis=1), self.layers),
        rows=jax.tree.map(lambda a: jnp.take(a, index_b, axis=0), self.rows))
