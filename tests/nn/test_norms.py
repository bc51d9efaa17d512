import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from rofjax.nn.norms import LayerNorm, RMSNorm, ScaleOffset
from tests import numpy_reference as ref


def _init(module, x, rng):
    params = module.init(jax.random.key(0), x)
    return ref.randomize(params, rng)


def test_layer_norm_matches_formula(rng):
    x = (rng.normal(size=(3, 5, 16)) * 3 + 1).astype(np.float32)
    module = LayerNorm(epsilon=1e-12)
    params = _init(module, x, rng)
    got = module.apply(params, x)
    gamma, beta = params["params"]["gamma"].astype(np.float64), params["params"]["beta"].astype(np.float64)
    x64 = x.astype(np.float64)
    mean = x64.mean(-1, keepdims=True)
    var = ((x64 - mean) ** 2).mean(-1, keepdims=True)
    expected = (x64 - mean) / np.sqrt(var + 1e-12) * gamma + beta
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5, rtol=1e-5)


def test_rms_norm_is_gain_free_by_default(rng):
    x = (rng.normal(size=(2, 4, 8)) * 5).astype(np.float32)
    module = RMSNorm()
    variables = module.init(jax.random.key(0), x)
    assert jax.tree_util.tree_leaves(variables) == []
    expected = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-12)
    np.testing.assert_allclose(np.asarray(module.apply(variables, x)), expected, atol=1e-5, rtol=1e-5)


def test_rms_norm_with_gain_and_epsilon(rng):
    x = rng.normal(size=(2, 3, 8)).astype(np.float32) * 1e-3
    module = RMSNorm(use_scale=True, epsilon=1e-7)
    params = _init(module, x, rng)
    gamma = params["params"]["gamma"].astype(np.float64)
    x64 = x.astype(np.float64)
    expected = x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + 1e-7) * gamma
    np.testing.assert_allclose(np.asarray(module.apply(params, x)), expected, atol=1e-5, rtol=1e-4)


def test_scale_offset_starts_as_identity_and_applies_formula(rng):
    x = rng.normal(size=(2, 3, 6)).astype(np.float32)
    module = ScaleOffset()
    params = module.init(jax.random.key(0), x)
    np.testing.assert_array_equal(np.asarray(module.apply(params, x)), x)
    params = ref.randomize(params, rng)
    p = params["params"]
    np.testing.assert_allclose(np.asarray(module.apply(params, x)), x * p["gamma"] + p["beta"], atol=1e-6)
    no_offset = ScaleOffset(use_offset=False).init(jax.random.key(0), x)
    assert set(no_offset["params"]) == {"gamma"}


@pytest.mark.parametrize("module", [LayerNorm(), RMSNorm(use_scale=True), ScaleOffset()])
def test_params_carry_logical_axes_and_dtypes_follow_config(module):
    x = jnp.ones((2, 3, 8), jnp.bfloat16)
    variables = module.init(jax.random.key(0), x)
    for leaf in jax.tree_util.tree_leaves(variables, is_leaf=lambda v: isinstance(v, nn.Partitioned)):
        assert isinstance(leaf, nn.Partitioned) and leaf.names == ("embed",)
        assert leaf.value.dtype == jnp.float32
    assert module.apply(variables, x).dtype == jnp.bfloat16
