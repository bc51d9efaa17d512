"""Rotary position embedding (RoPE).

`RoPE(x, m) = x ⊗ cos(mθ) + rot(x) ⊗ sin(mθ)` with `θ_i = base^(−2i/d)`, so that
`<RoPE(q, m), RoPE(k, n)>` depends on `m − n` only (Su et al., "RoFormer", arXiv 2104.09864; kexue.fm 8265).

The default layout rotates adjacent pairs `(x[2i], x[2i+1])` as bert4keras and Hugging Face RoFormer do; the
"half" layout rotates `(x[i], x[i + d/2])` as GPT-NeoX/LLaMA do. Both give the same q·k after the same
permutation of q and k. Angles are computed on the fly from integer positions in float32, so there is no length
cap and packed or offset sequences just pass their own `positions`. A layer's base, layout and scaling travel
together as one `RopeOptions`.

This module is the only place in rofjax that computes a sine table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import jax.numpy as jnp

Layout = Literal["interleaved", "half"]
Scaling = Literal["none", "linear", "ntk"]

LAYOUTS: tuple[str, ...] = ("interleaved", "half")
SCALINGS: tuple[str, ...] = ("none", "linear", "ntk")


def _check_head_dim(head_dim: int, what: str) -> None:
    if head_dim % 2 != 0 or head_dim <= 0:
        raise ValueError(f"RoPE needs an even, positive head_dim; got head_dim={head_dim} ({what}).")


def _check_scaling(base: float, scaling: str, scaling_factor: float) -> None:
    if scaling not in SCALINGS:
        raise ValueError(f"Unknown RoPE scaling={scaling!r}; expected one of {SCALINGS}.")
    if scaling_factor <= 0:
        raise ValueError(f"RoPE scaling_factor must be > 0; got {scaling_factor}.")
    if base <= 1:
        raise ValueError(f"RoPE base must be > 1; got {base}.")


def rotary_frequencies(head_dim: int, *, base: float = 10000.0, scaling: Scaling = "none",
                       scaling_factor: float = 1.0) -> jnp.ndarray:
    """`θ_i = base'^(−2i/d)`, i = 0 … d/2−1, float32.

    `scaling="ntk"` raises the base to `base · factor^(d/(d−2))` (NTK-aware interpolation), which stretches the
    low frequencies by `factor` while leaving the highest one unchanged.
    """
    _check_head_dim(head_dim, "rotary_frequencies")
    _check_scaling(base, scaling, scaling_factor)
    if scaling == "ntk" and head_dim > 2:
        base = base * scaling_factor ** (head_dim / (head_dim - 2))
    exponents = jnp.arange(0, head_dim // 2, dtype=jnp.float32) * (-2.0 / head_dim)
    return jnp.exp(exponents * math.log(base)).astype(jnp.float32)


def rotary_angles(positions, head_dim: int, *, base: float = 10000.0, scaling: Scaling = "none",
                  scaling_factor: float = 1.0) -> jnp.ndarray:
    """Angles `m·θ_i` for every position, shape `positions.shape + (head_dim // 2,)`, float32."""
    theta = rotary_frequencies(head_dim, base=base, scaling=scaling, scaling_factor=scaling_factor)
    positions = jnp.asarray(positions).astype(jnp.float32)
    if scaling == "linear":
        positions = positions / scaling_factor
    return positions[..., None] * theta


def sinusoidal_embeddings(positions, dim: int, *, base: float = 10000.0) -> jnp.ndarray:
    """bert4keras `sinusoidal_embeddings`: `[sin(pθ0), cos(pθ0), sin(pθ1), cos(pθ1), …]` (interleaved)."""
    angles = rotary_angles(positions, dim, base=base)
    return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(angles.shape[:-1] + (dim,))


def _broadcast_positions(positions, x_shape: Sequence[int]):
    batch, length = x_shape[0], x_shape[1]
    if positions is None:
        return jnp.arange(length, dtype=jnp.int32)[None, :]
    given = jnp.asarray(positions)
    positions = given[None, :] if given.ndim == 1 else given
    if positions.ndim != 2 or positions.shape[1] != length or positions.shape[0] not in (1, batch):
        raise ValueError(
            f"RoPE positions must have shape [length] or [batch|1, length] = [{batch}, {length}] for x of shape "
            f"{tuple(x_shape)}; got positions of shape {tuple(given.shape)}."
        )
    return positions


@dataclasses.dataclass(frozen=True)
class RopeOptions:
    """How a layer rotates q and k by position: `base` of θ, pair `layout` and long-context `scaling`.

    The defaults are RoFormer's (bert4keras, Hugging Face): base 10000, interleaved pairs, no scaling. Frozen and
    hashable, so one value configures every attention, GAU and GlobalPointer layer of a model.
    """

    base: float = 10000.0
    layout: Layout = "interleaved"
    scaling: Scaling = "none"
    scaling_factor: float = 1.0

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"Unknown RoPE layout={self.layout!r}; expected one of {LAYOUTS}.")
        _check_scaling(self.base, self.scaling, self.scaling_factor)

    def rotate(self, x, positions=None):
        """Rotate `x` `[batch, length, heads, head_dim]` (or `[batch, length, head_dim]`) by its positions.

        `positions` is `[length]` or `[batch, length]` integers (default `0 … length−1`). The rotation is done in
        float32 and cast back to `x.dtype`.
        """
        x = jnp.asarray(x)
        if x.ndim not in (3, 4):
            raise ValueError(
                f"RoPE expects x of shape [batch, length, heads, head_dim] or [batch, length, head_dim]; "
                f"got x of shape {tuple(x.shape)}."
            )
        head_dim = x.shape[-1]
        _check_head_dim(head_dim, f"x of shape {tuple(x.shape)}")
        positions = _broadcast_positions(positions, x.shape)
        angles = rotary_angles(positions, head_dim, base=self.base, scaling=self.scaling,
                               scaling_factor=self.scaling_factor)
        if x.ndim == 4:
            angles = angles[:, :, None, :]
        cos, sin = jnp.cos(angles), jnp.sin(angles)
        xf = x.astype(jnp.float32)
        # `x ⊗ cos + partner(x) ⊗ (∓sin)`: each element times its own angle's cosine plus its pair partner times a
        # signed sine. Written with a reversal instead of a stack of the rotated halves, the rotation is one
        # elementwise pass (a loop fusion on accelerators) forward and backward; the products and sums are the
        # same as `(even·cos − odd·sin, odd·cos + even·sin)`.
        if self.layout == "interleaved":
            pairs = x.shape[:-1] + (head_dim // 2, 2)
            partner = jnp.flip(xf.reshape(pairs), axis=-1).reshape(x.shape)
            cos_full = jnp.repeat(cos, 2, axis=-1)
            signed_sin = jnp.stack([-sin, sin], axis=-1).reshape(sin.shape[:-1] + (head_dim,))
        else:
            partner = jnp.concatenate([xf[..., head_dim // 2:], xf[..., : head_dim // 2]], axis=-1)
            cos_full = jnp.concatenate([cos, cos], axis=-1)
            signed_sin = jnp.concatenate([-sin, sin], axis=-1)
        rotated = xf * cos_full + partner * signed_sin
        return rotated.astype(x.dtype)


def apply_rotary(x, positions=None, *, base: float = 10000.0, layout: Layout = "interleaved",
                 scaling: Scaling = "none", scaling_factor: float = 1.0):
    """Rotate `x` by `positions` with the given options: `RopeOptions(...).rotate(x, positions)`."""
    return RopeOptions(base=base, layout=layout, scaling=scaling, scaling_factor=scaling_factor).rotate(x, positions)


def interleaved_to_half(x):
    """Permute the last axis from the interleaved-pair layout to the half-split layout.

    `apply_rotary(x, layout="interleaved")` permuted this way equals `apply_rotary(permuted x, layout="half")`,
    so permuting the q and k columns of a weight moves it from one convention to the other.
    """
    return jnp.concatenate([x[..., ::2], x[..., 1::2]], axis=-1)


def half_to_interleaved(x):
    """Inverse of `interleaved_to_half`."""
    half = x.shape[-1] // 2
    return jnp.stack([x[..., :half], x[..., half:]], axis=-1).reshape(x.shape)
