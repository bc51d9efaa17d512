"""Row lookups whose gradient is a matrix product instead of a scatter.

`take_rows(table, ids)` is `table[ids]`. Its plain JAX gradient is a scatter-add of one row per id into a zero
table; on GPU a scatter of 16k bf16 rows into a 12000 × 768 table is serialised (no bf16 atomics) and took 40%
of a RoFormerV2-base step on an H100. The `"one_hot"` method keeps the exact gather forward and computes the
gradient as `one_hot(ids)ᵀ · g` in the compute dtype (bf16 products of 0/1 and a bf16 cotangent are exact) with
float32 accumulation, a dense matmul the matrix units run at full rate; the
`"gather"` method gathers in the table's own dtype (float32 master weights), so its scatter runs in float32 with
hardware atomics. Both return exactly `table[ids]` and the same gradient up to float32 summation order
(tests compare them with a float64 reference).

`TokenEmbedding` is `nn.Embed` with that choice (same parameter name, `embedding`), and `gather_positions` picks
hidden states at given positions per example (the masked-LM head's inputs) the same way.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rofjax.nn.platform import target_platform

LOOKUPS: tuple[str, ...] = ("auto", "gather", "one_hot")


def resolve_lookup(method: str) -> str:
    """`auto` → `one_hot` on accelerators (GPU, TPU), `gather` on CPU, where a scatter is cheap; the platform is the
    mesh's where one is set, so a step compiled ahead of time for a TPU slice on a CPU host takes the TPU's form."""
    if method not in LOOKUPS:
        raise ValueError(f"Unknown row lookup {method!r}; expected one of {LOOKUPS}.")
    if method != "auto":
        return method
    return "gather" if target_platform() == "cpu" else "one_hot"


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _take_rows_dense_grad(table, ids, dtype):
    return jnp.take(table, ids, axis=0).astype(dtype)


def _take_fwd(table, ids, dtype):
    # The table itself is not saved: only its shape and dtype are needed for the gradient.
    return _take_rows_dense_grad(table, ids, dtype), (ids, jnp.zeros((table.shape[0], 0), table.dtype))


def _take_bwd(dtype, residuals, g):
    ids, shape_probe = residuals
    rows = shape_probe.shape[0]
    flat_ids = ids.reshape(-1)
    flat_g = g.reshape(flat_ids.shape[0], -1)
    # The cotangent arrives in the output dtype (bf16 under mixed precision), where 0/1 are exact and every
    # product one_hot · g is exact: a bf16 matmul with float32 accumulation gives the scatter-add's float32 sums.
    # A float32 cotangent needs HIGHEST, or the GPU would round g to TF32.
    precision = jax.lax.Precision.HIGHEST if flat_g.dtype == jnp.float32 else jax.lax.Precision.DEFAULT
    one_hot = (flat_ids[:, None] == jnp.arange(rows, dtype=flat_ids.dtype)[None, :]).astype(flat_g.dtype)
    grad = jnp.einsum("nv,ne->ve", one_hot, flat_g, preferred_element_type=jnp.float32, precision=precision)
    grad = grad.reshape((rows,) + g.shape[ids.ndim:]).astype(shape_probe.dtype)
    return grad, None


_take_rows_dense_grad.defvjp(_take_fwd, _take_bwd)


def take_rows(table, ids, *, method: str = "auto", dtype=None):
    """`table[ids]` (rows along axis 0) for integer `ids` of any shape, cast to `dtype` (default: the table's);
    `method` chooses the gradient."""
    method = resolve_lookup(method)
    ids = jnp.asarray(ids)
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"take_rows: ids must be integers; got dtype {ids.dtype}.")
    dtype = jnp.dtype(dtype or table.dtype)
    if method == "one_hot":
        return _take_rows_dense_grad(table, ids, dtype)
    return jnp.take(table, ids, axis=0).astype(dtype)


def gather_positions(hidden, positions, *, method: str = "auto"):
    """`hidden[b, positions[b, p]]` → `[batch, P, ...]` for `hidden` `[batch, length, ...]`."""
    if hidden.shape[0] != positions.shape[0]:
        raise ValueError(f"gather_positions: hidden {tuple(hidden.shape)} and positions "
                         f"{tuple(positions.shape)} differ in batch size.")
    method = resolve_lookup(method)
    return jax.vmap(functools.partial(take_rows, method=method))(hidden, positions)


def _logits(hidden, table):
    return jnp.einsum("...e,ve->...v", hidden, table.astype(hidden.dtype), preferred_element_type=jnp.float32)


@jax.custom_vjp
def _low_precision_logits(hidden, table):
    return _logits(hidden, table)


def _logits_fwd(hidden, table):
    return _low_precision_logits(hidden, table), (hidden, table)


def _logits_bwd(residuals, g):
    hidden, table = residuals
    # Both gradient products in the compute dtype, accumulated in float32. Left to itself XLA would run them on
    # the float32 cotangent and float32 master table (it may drop the round trip float32 → bf16 → float32), at
    # TF32 speed: 0.45 ms of a 28 ms RoFormerV2-base step on an H200.
    g = g.astype(hidden.dtype)
    weights = table.astype(hidden.dtype)
    d_hidden = jnp.einsum("...v,ve->...e", g, weights, preferred_element_type=jnp.float32).astype(hidden.dtype)
    d_table = jnp.einsum("...v,...e->ve", g, hidden, preferred_element_type=jnp.float32).astype(table.dtype)
    return d_hidden, d_table


_low_precision_logits.defvjp(_logits_fwd, _logits_bwd)


def vocabulary_logits(hidden, table):
    """`hidden · tableᵀ` in float32 for `hidden` `[..., E]` and a (tied) embedding `table` `[V, E]`.

    The table is cast to `hidden`'s dtype and the products accumulate in float32. Under mixed precision the
    backward products take the cotangent in the compute dtype too (rounded from float32, as autocast frameworks
    do); in float32 everything is plain float32.
    """
    if jnp.dtype(hidden.dtype) == jnp.float32:
        return _logits(hidden, table)
    return _low_precision_logits(hidden, table)


class TokenEmbedding(nn.Module):
    """`nn.Embed` whose lookup gathers in `param_dtype` and casts after, with the gradient method of `lookup`."""

    num_embeddings: int
    features: int
    embedding_init: Any = nn.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)
    lookup: str = "auto"
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def setup(self):
        self.embedding = self.param("embedding", self.embedding_init, (self.num_embeddings, self.features),
                                    self.param_dtype)

    def __call__(self, ids):
        # Cast inside the lookup, so that the one-hot gradient sees the compute-dtype cotangent.
        return take_rows(self.embedding, ids, method=self.lookup, dtype=self.dtype)
