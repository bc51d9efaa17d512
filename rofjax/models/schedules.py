"""Schedules that belong to a model rather than to its optimiser."""

from __future__ import annotations

import jax.numpy as jnp


def residual_alpha(step, ramp_steps: int):
    """α of the α-residual `Norm(x + α·F(x))`: 0 → 1 linearly over `ramp_steps` updates, then 1 (post 8620)."""
    if ramp_steps <= 0:
        return jnp.ones([], jnp.float32)
    return jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / ramp_steps)
