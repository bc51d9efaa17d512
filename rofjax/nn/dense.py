"""The one way rofjax makes a dense layer: `y = x W + b` with logical axis names on its weights.

`kernel_axes` names the kernel's `(input, output)` axes; the bias lies along the output, so it takes the kernel's
output axis name (after MaxText's `DenseGeneral(kernel_axes=...)`). Parameters are `kernel` and `bias` under the
given `name`, exactly as `flax.linen.Dense` lays them out, so checkpoint converters see one tree whatever the layer.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any
Initializer = Any
Axis = str | None
DEFAULT_KERNEL_INIT = nn.initializers.lecun_normal()         # flax.linen.Dense's own default


def dense(features: int, kernel_axes: tuple[Axis, Axis], *, name: str, use_bias: bool = True,
          kernel_init: Initializer = DEFAULT_KERNEL_INIT, bias_init: Initializer = nn.initializers.zeros,
          dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32) -> nn.Dense:
    """`nn.Dense(features)` whose kernel is partitioned along `kernel_axes` and whose bias along `kernel_axes[1]`."""
    if len(kernel_axes) != 2:
        raise ValueError(f"dense {name!r}: kernel_axes names the (input, output) axes of a 2-D kernel; got "
                         f"{kernel_axes!r}.")
    return nn.Dense(
        features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
        kernel_init=nn.with_logical_partitioning(kernel_init, tuple(kernel_axes)),
        bias_init=nn.with_logical_partitioning(bias_init, (kernel_axes[1],)), name=name,
    )


class DenseParams(nn.Module):
    """The `kernel` and `bias` that `dense(features, kernel_axes, name=...)` would create, under the same names,
    shapes, initialisers and partitioning, returned unapplied: for layers that multiply several kernels at once
    (the attention's q/k/v projections) while keeping each kernel where checkpoints expect it."""

    features: int
    kernel_axes: tuple[Axis, Axis]
    use_bias: bool = True
    kernel_init: Initializer = DEFAULT_KERNEL_INIT
    bias_init: Initializer = nn.initializers.zeros
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, in_features: int):
        kernel = self.param("kernel", nn.with_logical_partitioning(self.kernel_init, tuple(self.kernel_axes)),
                            (in_features, self.features), self.param_dtype)
        bias = None
        if self.use_bias:
            bias = self.param("bias", nn.with_logical_partitioning(self.bias_init, (self.kernel_axes[1],)),
                              (self.features,), self.param_dtype)
        return kernel, bias
