"""Multi-head and grouped-query attention: self (causal or bidirectional) and cross.

Packing: tokens attend only within their own segment (`segment_ids`), so documents
packed into one row never see each other.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from t5x_like.layers.common import dense, param
from t5x_like.layers.positions import RopeScaling, apply_rope


def attention_mask(q_segment_bt: jax.Array, k_segment_bs: jax.Array, *, causal: bool,
                   sliding_window: int = 0, q_index_bt: jax.Array | None = None,
                   k_index_bs: jax.Array | None = None) -> jax.Array:
  """Boolean [b, 1, t, s] mask: same segment and, if causal, key index <= query index.

  A causal mask with `sliding_window` > 0 also drops keys `sliding_window` or more positions
  behind the query, so each query sees itself and the `sliding_window - 1` keys before it
  (Hugging Face Mistral's window). Padding (segment 0) attends to padding only, which keeps
  every softmax row non-empty. The indices are where queries and keys sit in the row:
  0..t-1 and 0..s-1 unless given, as when a decoding step's queries sit at each row's own
  slot of a KV cache.
  """
  mask = q_segment_bt[:, :, None] == k_segment_bs[:, None, :]
  if causal:
    t, s = q_segment_bt.shape[1], k_segment_bs.shape[1]
    q_idx = jnp.arange(t)[None, :] if q_index_bt is None else q_index_bt
    k_idx = jnp.arange(s)[None, :] if k_index_bs is None else k_index_bs
    behind_bts = q_idx[:, :, None] - k_idx[:, None, :]  # how far each key trails the query
    visible_bts = behind_bts >= 0
    if sliding_window > 0:
      visible_bts = visible_bts & (behind_bts < sliding_window)
    mask = mask & visible_bts
  return mask[:, None]


def query_block(length: int, is_causal: bool) -> int:
  """Queries per block of `chunked_attention`. Measured on XLA CPU at lengths 256-2048
  (docs/benchmarks.md, "Attention in query blocks"): 128 is fastest or near it for causal
  attention, 64 for bidirectional (whose blocks read every key); and at most 32 blocks, since
  each one is compiled separately."""
  return max(128 if is_causal else 64, -(-length // 32))


def chunked_attention(q_btnh: jax.Array, k_bskh: jax.Array, v_bskh: jax.Array, *,
                      bias: jax.Array | None = None, mask: jax.Array | None = None,
                      scale: float, is_causal: bool = False,
                      block: int | None = None) -> jax.Array:
  """Attention computed for `block` queries at a time, with the numerics of
  `jax.nn.dot_product_attention`'s XLA path (fp32 logits and softmax, masked logits at -0.7
  of the float32 maximum) and the same arguments: `mask` [b|1, 1|n, t, s] boolean, `bias`
  [b|1, n, t, s]; `k`/`v` may have fewer heads than `q` (grouped queries).

  Two savings, both plain XLA and differentiated by JAX: with `is_causal` (query i sits at
  key i and no query may see a later key) a block of queries reads only the keys up to its
  last query, so about half the logits are never formed; and each block's logits are small
  enough to stay in cache through the mask, the softmax and their backward. On 2 CPU cores
  this halves a GPT-2 small layer's attention forward+backward (length 512), and bidirectional
  attention gains too (docs/benchmarks.md). The blocks are unrolled (their key ranges differ),
  so a call compiles `t / block` small attentions.
  """
  b, t, n, h = q_btnh.shape
  s, kv_heads = k_bskh.shape[1], k_bskh.shape[2]
  if is_causal and t != s:
    raise ValueError(f"is_causal needs as many queries as keys, got {t} queries and {s} keys")
  groups = n // kv_heads
  block = block or query_block(t, is_causal)
  dt = q_btnh.dtype
  logits_dt = jnp.promote_types(dt, jnp.float32)
  precision = jax.lax.DotAlgorithmPreset.BF16_BF16_F32 if dt == jnp.bfloat16 else None
  large_negative = jnp.asarray(-0.7 * float(jnp.finfo(jnp.float32).max), logits_dt)

  # Grouped queries: [b, u, n, h] queries as [b, u, kv_heads, groups, h], and the masks and
  # biases' head axis split to match. Without groups the einsums stay 4-d (a size-1 group axis
  # costs XLA CPU a layout change per block, measured).
  k_spec = "bskh"
  if groups == 1:
    q_spec, out_spec, heads = "bukh", "bkus", lambda x: x
  else:
    q_spec, out_spec = "bukgh", "bkgus"
    def heads(x):  # [b|1, n|1, u, s] -> [b|1, kv_heads|1, groups|1, u, s]
      if x.shape[1] == 1:
        return x[:, :, None]
      return x.reshape(x.shape[0], kv_heads, groups, *x.shape[2:])

  outs = []
  for start in range(0, t, block):
    end = min(t, start + block)
    keys = end if is_causal else s
    q_block = q_btnh[:, start:end]
    if groups > 1:
      q_block = q_block.reshape(b, end - start, kv_heads, groups, h)
    logits = jnp.einsum(f"{q_spec},{k_spec}->{out_spec}", q_block, k_bskh[:, :keys],
                        precision=precision, preferred_element_type=logits_dt)
    logits = logits * jnp.asarray(scale, logits_dt)
    if bias is not None:
      logits = (logits + heads(bias[:, :, start:end, :keys])).astype(logits_dt)
    visible = None if mask is None else heads(mask[:, :, start:end, :keys])
    if is_causal:  # the block's own diagonal, also under a mask (as dot_product_attention does)
      diagonal = jnp.arange(start, end)[:, None] >= jnp.arange(keys)[None, :]
      visible = diagonal if visible is None else visible & diagonal
    if visible is not None:
      logits = jnp.where(visible, logits, large_negative)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v_bskh.dtype)
    out = jnp.einsum(f"{out_spec},{k_spec}->{q_spec}", probs, v_bskh[:, :keys])
    outs.append(out.reshape(b, end - start, n, h))
  return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=1)


def attention_for(implementation: str, platform: str) -> str:
  """`model.attention_impl` made concrete for a platform: `auto` is `chunked` on CPU, where
  it is measured faster, and `xla` elsewhere (where `cudnn` is the fast choice on GPUs)."""
  if implementation == "cudnn" and platform != "gpu":
    from t5x_like.errors import ConfigError

    raise ConfigError(f"model.attention_impl=cudnn needs an NVIDIA GPU (JAX's platform here is {platform}); "
                      "use auto, xla or chunked (the same attention, computed otherwise)")
  if implementation != "auto":
    return implementation
  return "chunked" if platform == "cpu" else "xla"


class Attention(nnx.Module):
  def __init__(self, d_model: int, num_heads: int, num_kv_heads: int, head_dim: int, *,
               use_bias: bool, std: float, rngs: nnx.Rngs, scale: float | None = None,
               implementation: str = "xla", qkv_bias: bool = False):
    self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
    self.scale = scale  # None means 1/sqrt(head_dim); T5 uses 1.0 (folded into init)
    self.implementation = implementation
    # With an explicit scale (T5: 1.0) the usual 1/sqrt(head_dim) moves into the query init,
    # so initial attention logits have the same spread either way.
    q_std = std if scale is None else std * head_dim ** -0.5 / scale
    self.wq = param(rngs, (d_model, num_heads, head_dim), ("embed", "heads", "kv"), std=q_std)
    self.wk = param(rngs, (d_model, num_kv_heads, head_dim), ("embed", "heads", "kv"), std=std)
    self.wv = param(rngs, (d_model, num_kv_heads, head_dim), ("embed", "heads", "kv"), std=std)
    self.wo = param(rngs, (num_heads, head_dim, d_model), ("heads", "kv", "embed"), std=std)
    self.use_bias = use_bias
    self.qkv_bias = use_bias or qkv_bias  # Qwen2 has q/k/v biases without an output bias
    if self.qkv_bias:
      self.bq = param(rngs, (num_heads, head_dim), ("heads", "kv"), init="zeros")
      self.bk = param(rngs, (num_kv_heads, head_dim), ("heads", "kv"), init="zeros")
      self.bv = param(rngs, (num_kv_heads, head_dim), ("heads", "kv"), init="zeros")
    if use_bias:
      self.bo = param(rngs, (d_model,), ("embed",), init="zeros")

  def __call__(self, x_btd: jax.Array, kv_bsd: jax.Array | None = None, *,
               mask_b1ts: jax.Array | None = None, bias_bnts: jax.Array | None = None,
               q_positions_bt: jax.Array | None = None, k_positions_bs: jax.Array | None = None,
               rope_theta: float | None = None, rope_scaling: RopeScaling | None = None,
               is_causal: bool = False) -> jax.Array:
    """`is_causal` says the mask already hides keys after each query (query i and key i at
    the same position): the result is the same, and cuDNN skips the hidden blocks."""
    kv_bsd = x_btd if kv_bsd is None else kv_bsd
    q_btnh = self.queries(x_btd, q_positions_bt, rope_theta, rope_scaling)
    k_bskh, v_bskh = self.keys_values(kv_bsd, k_positions_bs, rope_theta, rope_scaling)
    return self.attend(q_btnh, k_bskh, v_bskh, mask_b1ts=mask_b1ts, bias_bnts=bias_bnts,
                       is_causal=is_causal)

  # The three parts of a call, separate so that a decoding step can project the new
  # token's keys and values into a cache and attend to the whole cache (layers/kv_cache.py).

  def queries(self, x_btd: jax.Array, positions_bt: jax.Array | None = None,
              rope_theta: float | None = None, rope_scaling: RopeScaling | None = None) -> jax.Array:
    dt = x_btd.dtype
    q_btnh = dense(x_btd, self.wq[...].astype(dt))
    if self.qkv_bias:
      q_btnh = q_btnh + self.bq[...].astype(dt)
    if rope_theta is not None:
      q_btnh = apply_rope(q_btnh, positions_bt, rope_theta, rope_scaling)
    return q_btnh

  def keys_values(self, kv_bsd: jax.Array, positions_bs: jax.Array | None = None,
                  rope_theta: float | None = None,
                  rope_scaling: RopeScaling | None = None) -> tuple[jax.Array, jax.Array]:
    dt = kv_bsd.dtype
    k_bskh = dense(kv_bsd, self.wk[...].astype(dt))
    v_bskh = dense(kv_bsd, self.wv[...].astype(dt))
    if self.qkv_bias:
      k_bskh = k_bskh + self.bk[...].astype(dt)
      v_bskh = v_bskh + self.bv[...].astype(dt)
    if rope_theta is not None:
      k_bskh = apply_rope(k_bskh, positions_bs, rope_theta, rope_scaling)
    return k_bskh, v_bskh

  def attend(self, q_btnh: jax.Array, k_bskh: jax.Array, v_bskh: jax.Array, *,
             mask_b1ts: jax.Array | None = None, bias_bnts: jax.Array | None = None,
             is_causal: bool = False) -> jax.Array:
    dt = q_btnh.dtype
    scale = self.scale if self.scale is not None else self.head_dim ** -0.5
    bias = None if bias_bnts is None else bias_bnts.astype(dt)
    impl = attention_for(self.implementation, jax.default_backend())
    if impl == "chunked":
      out_btnh = chunked_attention(q_btnh, k_bskh, v_bskh, bias=bias, mask=mask_b1ts,
                                   scale=scale, is_causal=is_causal)
    else:
      out_btnh = jax.nn.dot_product_attention(
          q_btnh, k_bskh, v_bskh, bias=bias, mask=mask_b1ts, scale=scale, is_causal=is_causal,
          implementation=None if impl == "xla" else impl)
    out_btd = dense(out_btnh, self.wo[...].astype(dt), contract=2)
    if self.use_bias:
      out_btd = out_btd + self.bo[...].astype(dt)
    return out_btd
