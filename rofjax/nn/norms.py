"""Normalisation layers as bert4keras defines them.

* `LayerNorm`: `y = (x − mean) / sqrt(var + eps) · γ + β` (BERT, RoFormer v1).
* `RMSNorm`: `y = x / sqrt(mean(x²) + eps)` — RoFormerV2 and GAU-α use it with no gain and no offset
  (bert4keras `LayerNormalization(zero_mean=False, scale=False, offset=False)`); `use_scale=True` adds a gain.
* `ScaleOffset`: `y = x · γ + β` with γ = 1, β = 0 at init (GAU's per-dimension maps 𝒬, 𝒦).

The statistics are computed in float32 whatever the compute dtype. The default epsilon is 1e-12: the value
bert4keras used when RoFormer, RoFormerV2 and GAU-α were trained (it became 1e-7 from 2022-04-28) and the value
the PyTorch ports use.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
DEFAULT_EPSILON = 1e-12


def _normalized(x, epsilon: float, zero_mean: bool):
    """`x / sqrt(mean(x²) + eps)` in float32, after subtracting the mean when `zero_mean` (bert4keras
    `LayerNormalization(zero_mean=...)`)."""
    xf = jnp.asarray(x, jnp.float32)
    if zero_mean:
        xf = xf - jnp.mean(xf, axis=-1, keepdims=True)
    return xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), axis=-1, keepdims=True) + epsilon)


def _scale_and_offset(module: nn.Module, y, *, use_scale: bool, use_offset: bool, dtype):
    """`y · gamma + beta` (either optional) with per-feature parameters read in `dtype`."""
    def feature_param(name: str, init):
        return jnp.asarray(module.param(name, nn.with_logical_partitioning(init, (module.axis_name,)),
                                        (y.shape[-1],), module.param_dtype), dtype)

    if use_scale:
        y = y * feature_param("gamma", nn.initializers.ones)
    if use_offset:
        y = y + feature_param("beta", nn.initializers.zeros)
    return y


class LayerNorm(nn.Module):
    """Layer normalisation over the last axis with gain `gamma` and offset `beta`."""

    epsilon: float = DEFAULT_EPSILON
    use_scale: bool = True
    use_offset: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    axis_name: str = "embed"

    @nn.compact
    def __call__(self, x):
        y = _normalized(x, self.epsilon, zero_mean=True)
        y = _scale_and_offset(self, y, use_scale=self.use_scale, use_offset=self.use_offset, dtype=jnp.float32)
        return y.astype(self.dtype or x.dtype)


class RMSNorm(nn.Module):
    """Root-mean-square normalisation; gain-free by default (RoFormerV2, GAU-α)."""

    epsilon: float = DEFAULT_EPSILON
    use_scale: bool = False
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    axis_name: str = "embed"

    @nn.compact
    def __call__(self, x):
        y = _normalized(x, self.epsilon, zero_mean=False)
        y = _scale_and_offset(self, y, use_scale=self.use_scale, use_offset=False, dtype=jnp.float32)
        return y.astype(self.dtype or x.dtype)


class ScaleOffset(nn.Module):
    """`x · γ + β` over the last axis; γ starts at ones and β at zeros, as bert4keras `ScaleOffset`."""

    use_scale: bool = True
    use_offset: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    axis_name: str = "embed"

    @nn.compact
    def __call__(self, x):
        dtype = self.dtype or x.dtype
        return _scale_and_offset(self, jnp.asarray(x, dtype), use_scale=self.use_scale, use_offset=self.use_offset,
                                 dtype=dtype)

