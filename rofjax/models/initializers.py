"""Weight initialisers of the three families.

* `bert`: truncated normal, σ = 0.02 (cut at 2σ, as Keras `TruncatedNormal`).
* `depth_scaled` (RoFormerV2 order 2, GAU-α order 3; kexue.fm 8978):
  `σ = 1.13684723 / √fan · L^(−1/order)`, truncated at 2σ. 1.13684723 undoes the 2σ truncation's shrinkage, so
  the effective std is `fan^(−1/2) · L^(−1/order)`. `fan` is `shape[1]` when `shape[0] > 10000` or `< 10`
  (embedding tables), else `shape[0]`, exactly as bert4keras decides it.
* `xavier`: Glorot uniform (the Keras default).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

TRUNCATION_CORRECTION = 1.13684723


def depth_scaled_truncated_normal(num_layers: int, order: int, gain: float = 1.0):
    def init(key, shape, dtype=jnp.float32):
        if len(shape) < 2:
            raise ValueError(f"depth_scaled_truncated_normal initialises matrices; got shape {tuple(shape)}.")
        fan = shape[1] if (shape[0] > 10000 or shape[0] < 10) else shape[0]
        stddev = TRUNCATION_CORRECTION / math.sqrt(fan) * gain * num_layers ** (-1.0 / order)
        return (jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32) * stddev).astype(dtype)

    return init


def kernel_initializer(config):
    """The initialiser every kernel and embedding of `config`'s encoder and heads uses."""
    if config.initializer == "bert":
        return nn.initializers.truncated_normal(stddev=config.initializer_range)
    if config.initializer == "depth_scaled":
        return depth_scaled_truncated_normal(config.num_layers, config.initializer_order)
    return nn.initializers.glorot_uniform()
