import chex
import jax
import jax.numpy as jnp
import pytest
from flax import linen as nn

from rofjax.nn.dense import dense


class _Two(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = dense(6, ("embed", "mlp"), name="up", dtype=jnp.bfloat16)(x)
        return dense(3, ("mlp", None), name="down", use_bias=False, kernel_init=nn.initializers.ones,
                     dtype=jnp.bfloat16)(h)


class _PlainFlax(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Dense(6, name="up", dtype=jnp.bfloat16)(x)
        return nn.Dense(3, name="down", use_bias=False, kernel_init=nn.initializers.ones, dtype=jnp.bfloat16)(h)


def test_bias_takes_the_kernel_output_axis_and_the_tree_is_flax_dense():
    x = jnp.ones((2, 5, 4))
    variables = _Two().init(jax.random.key(0), x)
    names = jax.tree_util.tree_map(lambda p: p.names, variables["params"],
                                   is_leaf=lambda p: isinstance(p, nn.Partitioned))
    assert names == {"up": {"kernel": ("embed", "mlp"), "bias": ("mlp",)}, "down": {"kernel": ("mlp", None)}}
    params = nn.unbox(variables)["params"]
    chex.assert_shape([params["up"]["kernel"], params["up"]["bias"], params["down"]["kernel"]],
                      [(4, 6), (6,), (6, 3)])
    chex.assert_type([params["up"]["kernel"], params["down"]["kernel"]], jnp.float32)
    plain = _PlainFlax().init(jax.random.key(0), x)["params"]          # same names, initialisers and draws
    chex.assert_trees_all_equal(params, plain)
    out = _Two().apply(variables, x)
    chex.assert_trees_all_equal(out, _PlainFlax().apply({"params": plain}, x))
    chex.assert_shape(out, (2, 5, 3))
    chex.assert_type(out, jnp.bfloat16)


def test_kernel_axes_must_name_two_axes():
    with pytest.raises(ValueError, match=r"dense 'up': kernel_axes names the \(input, output\) axes"):
        dense(4, ("embed",), name="up")
