"""Activations by the names `bert_config.json` and bert4keras use."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


# The GELUs recompute their inner terms in the backward pass from the input, which the pass keeps anyway: left
# to autodiff, the erf form keeps three more `[tokens, FFN]` tensors (the product, erfc and exp terms) for its
# gradient, written in the forward pass and read back in the backward one. Compiled for an H200, the RoFormer
# masked-LM step at base size moves 2.4 GB less a step (benchmarks/hlo_traffic.py). Values are unchanged.
@jax.checkpoint
def gelu_erf(x):
    """BERT's exact GELU, `x · Φ(x)`."""
    return jax.nn.gelu(x, approximate=False)


@jax.checkpoint
def gelu_tanh(x):
    return jax.nn.gelu(x, approximate=True)


@jax.custom_jvp
def relu(x):
    """`max(x, 0)`, with `jax.nn.relu`'s derivative (1 where x > 0, else 0) read from the output.

    `y > 0` exactly where `x > 0`, so the gradient is the same; but the backward pass then needs `y`, which the next
    matmul keeps anyway, instead of `x`: a feed-forward block keeps one `[tokens, FFN]` tensor for its backward pass
    instead of two. The mask is read through an optimisation barrier: without it XLA sees that `max(x, 0) > 0` is
    `x > 0` and reads `x` again in the backward pass, which leaves the matmul producing `x` with two readers, and
    its GPU rewriter folds a ReLU into cuBLASLt's epilogue only when the maximum is the matmul's one reader. With
    the barrier the feed-forward's first matmul writes `max(x, 0)` directly (epilogue RELU in the compiled GPU
    step) instead of writing `x` and running a separate elementwise pass over it.
    """
    return jnp.maximum(x, jnp.zeros_like(x))


@relu.defjvp
def _relu_jvp(primals, tangents):
    (x,), (tangent,) = primals, tangents
    y = relu(x)
    mask_source = jax.lax.optimization_barrier(y)
    return y, jnp.where(mask_source > 0, tangent, jnp.zeros_like(tangent))


def squared_relu(x):
    return jnp.square(relu(x))


ACTIVATIONS: dict[str, Callable] = {
    "gelu": gelu_erf,
    "gelu_erf": gelu_erf,
    "gelu_new": gelu_tanh,
    "gelu_tanh": gelu_tanh,
    "relu": relu,
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
