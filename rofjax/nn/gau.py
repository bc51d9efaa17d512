"""Gated Attention Unit (GAU) and FLASH's mixed-chunk attention.

GAU (Hua et al., "Transformer Quality in Linear Time", arXiv 2202.10447; kexue.fm 8934, 8990), as bert4keras
`GatedAttentionUnit`:

    u, v, z = split(φ(x W_i + b_i), [e, e, s])         one fused projection, in that order
    q = z ⊙ γ_q + β_q,  k = z ⊙ γ_k + β_k,  RoPE on q and k
    A = normalize(q kᵀ / √s)                          relu²/l by default; softmax_plus for GAU-α
    o = (u ⊙ A v) W_o + b_o

Mixed-chunk attention (FLASH) splits the sequence into chunks of `c` tokens: exact attention inside each chunk
plus linear attention across chunks, `V̂_g = A_g^quad V_g + Q_g^lin (Σ_h K_hᵀ V_h) / l`, where the sum runs over
all chunks (non-causal, l = valid tokens) or over previous chunks only (causal, l = tokens in those chunks, the
prefix-length normaliser of post 8934). Cost is linear in the sequence length.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from rofjax.nn.activations import get_activation
from rofjax.nn.attention import NORMALIZATIONS, attention_normalize
from rofjax.nn.dense import dense
from rofjax.nn.dropout import Dropout
from rofjax.nn.norms import ScaleOffset
from rofjax.nn.rope import RopeOptions

Dtype = Any
Initializer = Any


def _masks(mask, batch: int, length: int, chunked: bool):
    """(key mask [batch, length], pair mask [batch, length, length] or None) from a key or full mask."""
    if mask is None:
        return jnp.ones((batch, length), dtype=bool), None
    mask = jnp.asarray(mask).astype(bool)
    if mask.ndim == 4 and mask.shape[1] == 1 and mask.shape[2:] == (length, length) and not chunked:
        pair = jnp.broadcast_to(mask[:, 0], (batch, length, length))
        return jnp.any(pair, axis=1), pair
    if chunked and mask.ndim == 4:
        raise ValueError("GatedAttentionUnit: FLASH mixed-chunk attention (chunk_size / gau_chunk_size) takes a key "
                         f"mask [batch, length] only; got a full mask {tuple(mask.shape)}, as packed documents make. "
                         "Train chunked GAU on unpacked rows (config.data.pack=False) or without chunking.")
    if mask.ndim != 2 or mask.shape[1] != length or mask.shape[0] not in (1, batch):
        allowed = "[batch, length]" + ("" if chunked else " or [batch, 1, length, length]")
        raise ValueError(f"GatedAttentionUnit: mask must be {allowed} with batch={batch}, length={length}; got "
                         f"{tuple(mask.shape)}.")
    return jnp.broadcast_to(mask, (batch, length)), None


class GatedAttentionUnit(nn.Module):
    """Single-head gated attention; set `chunk_size` for FLASH's linear-time mixed-chunk attention."""

    units: int
    key_size: int = 128
    activation: str = "swish"
    use_bias: bool = True
    normalization: str = "squared_relu"
    attention_scale: bool = True
    dropout_rate: float = 0.0
    use_rope: bool = True
    rope: RopeOptions = RopeOptions()
    softmax_plus_min_length: int | None = None
    chunk_size: int | None = None
    causal: bool = False
    kernel_init: Initializer = nn.initializers.glorot_uniform()
    bias_init: Initializer = nn.initializers.zeros
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    def _query_or_key(self, z, positions, name: str):
        """One per-dimension map of the shared `z` (𝒬, 𝒦 and FLASH's linear-attention pair), rotated."""
        t = ScaleOffset(use_offset=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype, axis_name="kv",
                        name=name)(z)
        return self.rope.rotate(t, positions) if self.use_rope else t

    def _weights(self, logits, mask, deterministic: bool):
        weights = attention_normalize(logits, mask, self.normalization,
                                      softmax_plus_min_length=self.softmax_plus_min_length)
        self.sow("intermediates", "attention_weights", weights)
        if self.dropout_rate > 0:
            weights = Dropout(self.dropout_rate)(weights, deterministic=deterministic)
        return weights

    @nn.compact
    def __call__(self, x, mask=None, *, positions=None, deterministic: bool = True):
        """`x` `[batch, length, embed]`; `mask` a key mask `[batch, length]` (True = real token) or, without
        chunking, a full mask `[batch, 1, length, length]` (packed sequences)."""
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"Unknown GAU normalization={self.normalization!r}; expected one of {NORMALIZATIONS}.")
        if x.ndim != 3:
            raise ValueError(f"GatedAttentionUnit expects x [batch, length, embed]; got shape {tuple(x.shape)}.")
        if self.chunk_size is not None and self.chunk_size <= 0:
            raise ValueError(f"GatedAttentionUnit chunk_size must be a positive int or None; got {self.chunk_size}.")
        batch, length, features = x.shape
        key_mask, full_mask = _masks(mask, batch, length, self.chunk_size is not None)
        e, s = self.units, self.key_size

        layer = functools.partial(dense, use_bias=self.use_bias, kernel_init=self.kernel_init,
                                  bias_init=self.bias_init, dtype=self.dtype, param_dtype=self.param_dtype)
        h = layer(2 * e + s, ("embed", "mlp"), name="i_dense")(x)
        h = get_activation(self.activation)(h)
        u, v, z = h[..., :e], h[..., e:2 * e], h[..., 2 * e:]
        u = nn.with_logical_constraint(u, ("batch", "length", "mlp"))
        v = nn.with_logical_constraint(v, ("batch", "length", "mlp"))
        q = self._query_or_key(z, positions, "q_scaleoffset")
        k = self._query_or_key(z, positions, "k_scaleoffset")
        scale = 1.0 / math.sqrt(s) if self.attention_scale else 1.0

        if self.chunk_size is None:
            logits = jnp.einsum("bmd,bnd->bmn", q, k, preferred_element_type=jnp.float32) * scale
            pair_mask = key_mask[:, None, :] if full_mask is None else full_mask
            if self.causal:
                pair_mask = pair_mask & jnp.tril(jnp.ones((length, length), dtype=bool))[None]
            weights = self._weights(logits, pair_mask, deterministic)
            mixed = jnp.einsum("bmn,bne->bme", weights.astype(v.dtype), v)
        else:
            lin_q = self._query_or_key(z, positions, "lin_q_scaleoffset")
            lin_k = self._query_or_key(z, positions, "lin_k_scaleoffset")
            mixed = self._mixed_chunk(q, k, lin_q, lin_k, v, key_mask, scale, deterministic)

        o = u * mixed.astype(u.dtype)
        out = layer(features, ("mlp", "embed"), name="o_dense")(o)
        return nn.with_logical_constraint(out, ("batch", "length", "embed"))

    def _mixed_chunk(self, q, k, lin_q, lin_k, v, key_mask, scale, deterministic):
        batch, length, _ = q.shape
        c = self.chunk_size
        groups = -(-length // c)
        pad = groups * c - length

        def chunked(t):
            t = jnp.pad(t, [(0, 0), (0, pad)] + [(0, 0)] * (t.ndim - 2))
            return t.reshape((batch, groups, c) + t.shape[2:])

        valid = chunked(key_mask)                                         # [b, g, c]
        q, k, lin_q, lin_k, v = map(chunked, (q, k, lin_q, lin_k, v))
        validf = valid.astype(jnp.float32)[..., None]
        v32 = v.astype(jnp.float32) * validf
        lin_k = lin_k.astype(jnp.float32) * validf

        logits = jnp.einsum("bgmd,bgnd->bgmn", q, k, preferred_element_type=jnp.float32) * scale
        pair_mask = valid[:, :, None, :]
        if self.causal:
            pair_mask = pair_mask & jnp.tril(jnp.ones((c, c), dtype=bool))
        weights = self._weights(logits, pair_mask, deterministic)
        quadratic = jnp.einsum("bgmn,bgne->bgme", weights.astype(jnp.float32), v32)

        per_chunk_kv = jnp.einsum("bgnd,bgne->bgde", lin_k, v32)            # [b, g, s, e]
        per_chunk_count = jnp.sum(validf[..., 0], axis=-1)                # [b, g]
        if self.causal:
            kv = jnp.cumsum(per_chunk_kv, axis=1) - per_chunk_kv            # previous chunks only
            count = jnp.cumsum(per_chunk_count, axis=1) - per_chunk_count
            linear = jnp.einsum("bgmd,bgde->bgme", lin_q.astype(jnp.float32), kv)
        else:
            kv = jnp.sum(per_chunk_kv, axis=1)
            count = jnp.broadcast_to(jnp.sum(per_chunk_count, axis=1, keepdims=True), per_chunk_count.shape)
            linear = jnp.einsum("bgmd,bde->bgme", lin_q.astype(jnp.float32), kv)
        linear = linear / jnp.maximum(count, 1.0)[..., None, None]
        mixed = (quadratic + linear).reshape(batch, groups * c, -1)[:, :length]
        return mixed
