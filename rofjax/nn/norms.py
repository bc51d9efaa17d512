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


def _feature_param(module: nn.Module, name: str, init, size: int, axis_name: str):
    return module.param(name, nn.with_logical_partitioning(init, (axis_name,)), (size,), module.param_dtype)


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
        dtype = self.dtype or x.dtype
        xf = jnp.asarray(x, jnp.float32)
        mean = jnp.mean(xf, axis=-1, keepdims=True)
        centred = xf - mean
        variance = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
        y = centred * jax.lax.rsqrt(variance + self.epsilon)
        if self.use_scale:
            y = y * jnp.asarray(_feature_param(self, "gamma", nn.initializers.ones, x.shape[-1], self.axis_name),
                                jnp.float32)
        if self.use_offset:
            y = y + jnp.asarray(_feature_param(self, "beta", nn.initializers.zeros, x.shape[-1], self.axis_name),
                                jnp.float32)
        return y.astype(dtype)


class RMSNorm(nn.Module):
    """Root-mean-square normalisation; gain-free by default (RoFormerV2, GAU-α)."""

    epsilon: float = DEFAULT_EPSILON
    use_scale: bool = False
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    axis_name: str = "embed"

    @nn.compact
    def __call__(self, x):
        dtype = self.dtype or x.dtype
        xf = jnp.asarray(x, jnp.float32)
        y = xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), axis=-1, keepdims=True) + self.epsilon)
        if self.use_scale:
            y = y * jnp.asarray(_feature_param(self, "gamma", nn.initializers.ones, x.shape[-1], self.axis_name),
                                jnp.float32)
        return y.astype(dtype)


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
        y = jnp.asarray(x, dtype)
        if self.use_scale:
            y = y * jnp.asarray(_feature_param(self, "gamma", nn.initializers.ones, x.shape[-1], self.axis_name),
                                dtype)
        if self.use_offset:
            y = y + jnp.asarray(_feature_param(self, "beta", nn.initializers.zeros, x.shape[-1], self.axis_name),
                                dtype)
        return y

