"""Position-wise feed-forward block: `O = φ(X W_i + b_i) W_o + b_o` (BERT, RoFormer, RoFormerV2)."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from rofjax.nn.activations import get_activation
from rofjax.nn.dense import dense
from rofjax.nn.dropout import Dropout

Dtype = Any
Initializer = Any


class FeedForward(nn.Module):
    """Dense `embed → mlp`, activation, dense `mlp → embed` (bert4keras `FeedForward`, sub-layers `i_dense`,
    `o_dense`)."""

    intermediate_size: int
    activation: str = "gelu"
    use_bias: bool = True
    kernel_init: Initializer = nn.initializers.glorot_uniform()
    bias_init: Initializer = nn.initializers.zeros
    dropout_rate: float = 0.0
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, deterministic: bool = True):
        if self.intermediate_size <= 0:
            raise ValueError(f"FeedForward intermediate_size must be > 0; got {self.intermediate_size}.")
        features = x.shape[-1]
        layer = functools.partial(dense, use_bias=self.use_bias, kernel_init=self.kernel_init,
                                  bias_init=self.bias_init, dtype=self.dtype, param_dtype=self.param_dtype)
        h = layer(self.intermediate_size, ("embed", "mlp"), name="i_dense")(x)
        h = get_activation(self.activation)(h)
        h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
        if self.dropout_rate > 0:
            h = Dropout(self.dropout_rate)(h, deterministic=deterministic)
        return layer(features, ("mlp", "embed"), name="o_dense")(h)
