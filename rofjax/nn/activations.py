"""Activations by the names `bert_config.json` and bert4keras use."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def gelu_erf(x):
    """BERT's exact GELU, `x · Φ(x)`."""
    return jax.nn.gelu(x, approximate=False)


def gelu_tanh(x):
    return jax.nn.gelu(x, approximate=True)


def squared_relu(x):
    return jnp.square(jax.nn.relu(x))


ACTIVATIONS: dict[str, Callable] = {
    "gelu": gelu_erf,
    "gelu_erf": gelu_erf,
    "gelu_new": gelu_tanh,
    "gelu_tanh": gelu_tanh,
    "relu": jax.nn.relu,
    "swish": jax.nn.silu,
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "squared_relu": squared_relu,
    "linear": lambda x: x,
}


def get_activation(name: str | Callable) -> Callable:
    """Look an activation up by name (a callable passes through unchanged)."""
    if callable(name):
        return name
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"Unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}.") from None
