"""Inverted dropout whose mask costs half the random bits of `flax.linen.Dropout`.

Each 32-bit random word is split into two 16-bit uniforms, and an element is kept when its uniform is at least
`round(rate · 2¹⁶)`; kept elements are scaled by the inverse of that exact keep probability, so `E[dropout(x)] = x`.
The rate is therefore quantised to 1/65536 (|Δrate| ≤ 7.7e-6). On CPU this makes a mask about 2.5× cheaper
(benchmarks/encoder_step.py), which matters because every layer draws three of them.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

RESOLUTION = 1 << 16


def quantised_keep_probability(rate: float) -> float:
    return 1.0 - round(rate * RESOLUTION) / RESOLUTION


def dropout_mask(rng, shape, rate: float):
    """Bool mask of `shape`, True with probability `quantised_keep_probability(rate)`."""
    size = 1
    for dim in shape:
        size *= dim
    words = jax.random.bits(rng, ((size + 1) // 2,), jnp.uint32)
    uniforms = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[:size].reshape(shape)
    return uniforms >= jnp.uint16(round(rate * RESOLUTION))


class Dropout(nn.Module):
    """Drop-in for `nn.Dropout(rate)(x, deterministic=...)`, drawing from the "dropout" RNG stream."""

    rate: float
    rng_collection: str = "dropout"

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1); got {self.rate}.")
        if deterministic or round(self.rate * RESOLUTION) == 0:
            return x
        keep = dropout_mask(self.make_rng(self.rng_collection), x.shape, self.rate)
        return jnp.where(keep, x / jnp.asarray(quantised_keep_probability(self.rate), x.dtype), jnp.zeros_like(x))
