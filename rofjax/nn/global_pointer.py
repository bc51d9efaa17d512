"""GlobalPointer and Efficient GlobalPointer span scorers (kexue.fm 8373, 8877; bert4keras layers).

GlobalPointer: per head α, `s_α(i, j) = (R_i q_{i,α})ᵀ (R_j k_{j,α}) / √d` from one dense layer whose output,
split into `heads` blocks of width 2d, holds `[q_α | k_α]`.

Efficient GlobalPointer: one shared `P = h W_p + b_p` of width 2d with `q = P[..., ::2]`, `k = P[..., 1::2]`, and
a per-class bias from the un-rotated P:
`s_α(i, j) = q_i·k_j / √d + ½ (w_{2α+1}·P_i + b_{2α+1}) + ½ (w_{2α}·P_j + b_{2α})`.

Both return logits `[batch, heads, n, n]` with padded rows and columns, and (with `tril_mask`) the strict lower
triangle `i > j`, set to `mask_value` (−inf by default, as bert4keras ≥ 0.11.5; the losses treat it as masked).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from rofjax.nn.dense import dense
from rofjax.nn.rope import RopeOptions

Dtype = Any
Initializer = Any


def span_mask(mask, length: int, batch: int, tril_mask: bool, what: str):
    """Bool `[batch|1, 1, n, n]`: both ends real tokens and, with `tril_mask`, start ≤ end."""
    allowed = jnp.ones((1, 1, length, length), dtype=bool)
    if mask is not None:
        mask = jnp.asarray(mask).astype(bool)
        if mask.ndim != 2 or mask.shape[1] != length or mask.shape[0] not in (1, batch):
            raise ValueError(f"{what}: mask must be [batch, length] = [{batch}, {length}]; got {tuple(mask.shape)}.")
        allowed = mask[:, None, :, None] & mask[:, None, None, :]
    if tril_mask:
        allowed = allowed & jnp.triu(jnp.ones((length, length), dtype=bool))[None, None]
    return allowed


class _SpanPointer(nn.Module):
    """Checks, dense settings and masking shared by both pointers; a subclass scores `[batch, heads, n, n]`."""

    heads: int
    head_size: int = 64
    use_rope: bool = True
    use_bias: bool = True
    tril_mask: bool = True
    mask_value: float = -jnp.inf
    rope: RopeOptions = RopeOptions()
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, mask=None, *, positions=None):
        """`x` `[batch, length, embed]`; `mask` `[batch, length]` marks the tokens a span may start or end at."""
        if x.ndim != 3:
            raise ValueError(f"{type(self).__name__} expects x [batch, length, embed]; got shape {tuple(x.shape)}.")
        if self.heads <= 0 or self.head_size <= 0:
            raise ValueError(f"{type(self).__name__} needs heads > 0 and head_size > 0; got heads={self.heads}, "
                             f"head_size={self.head_size}.")
        layer = functools.partial(dense, use_bias=self.use_bias, kernel_init=self.kernel_init,
                                  bias_init=self.bias_init, dtype=self.dtype, param_dtype=self.param_dtype)
        rotate = (lambda t: self.rope.rotate(t, positions)) if self.use_rope else (lambda t: t)
        logits = self._scores(x, layer, rotate)
        batch, _, length, _ = logits.shape
        allowed = span_mask(mask, length, batch, self.tril_mask, type(self).__name__)
        return jnp.where(allowed, logits, jnp.asarray(self.mask_value, logits.dtype))

    def _scores(self, x, layer, rotate):
        """`[batch, heads, n, n]` span scores; each pointer variant defines its own."""
        raise NotImplementedError(f"{type(self).__name__} defines no span scores")


class GlobalPointer(_SpanPointer):
    """bert4keras `GlobalPointer(heads, head_size, RoPE, use_bias, tril_mask)`; sub-layer `dense`."""

    def _scores(self, x, layer, rotate):
        d = self.head_size
        qk = layer(self.heads * 2 * d, ("embed", "heads"), name="dense")(x)
        qk = qk.reshape(qk.shape[:-1] + (self.heads, 2 * d))
        q, k = rotate(qk[..., :d]), rotate(qk[..., d:])
        return jnp.einsum("bmhd,bnhd->bhmn", q, k, preferred_element_type=jnp.float32) / math.sqrt(d)


class EfficientGlobalPointer(_SpanPointer):
    """bert4keras `EfficientGlobalPointer`; sub-layers `p_dense` (2·head_size) and `q_dense` (2·heads)."""

    def _scores(self, x, layer, rotate):
        d = self.head_size
        p = layer(2 * d, ("embed", "kv"), name="p_dense")(x)
        q, k = rotate(p[..., ::2]), rotate(p[..., 1::2])
        logits = jnp.einsum("bmd,bnd->bmn", q, k, preferred_element_type=jnp.float32) / math.sqrt(d)
        bias = layer(2 * self.heads, ("kv", "heads"), name="q_dense")(p)
        bias = jnp.swapaxes(bias, 1, 2).astype(jnp.float32) / 2            # [b, 2h, n]
        return logits[:, None] + bias[:, ::2, None, :] + bias[:, 1::2, :, None]
