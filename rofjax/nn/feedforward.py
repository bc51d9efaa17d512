"""Position-wise feed-forward block: `O = φ(X W_i + b_i) W_o + b_o` (BERT, RoFormer, RoFormerV2)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from rofjax.nn.activations import get_activation
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
        h = nn.Dense(
            self.intermediate_size, use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
            kernel_init=nn.with_logical_partitioning(self.kernel_init, ("embed", "mlp")),
            bias_init=nn.with_logical_partitioning(self.bias_init, ("mlp",)), name="i_dense",
        )(x)
        h = get_activation(self.activation)(h)
        h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
        if self.dropout_rate > 0:
            h = Dropout(self.dropout_rate)(h, deterministic=deterministic)
        return nn.Dense(
            features, use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
            kernel_init=nn.with_logical_partitioning(self.kernel_init, ("mlp", "embed")),
            bias_init=nn.with_logical_partitioning(self.bias_init, ("embed",)), name="o_dense",
        )(h)
