import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rofjax.nn.dropout import Dropout, quantised_keep_probability


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.03])
def test_keep_fraction_and_unbiased_scaling(rate):
    x = jnp.ones((64, 1024))
    y = np.asarray(Dropout(rate).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)}))
    keep = quantised_keep_probability(rate)
    assert abs(keep - (1 - rate)) <= 1 / 65536
    kept = y != 0
    n = kept.size
    assert abs(kept.mean() - keep) < 5 * np.sqrt(keep * (1 - keep) / n)        # 5 sigma
    np.testing.assert_allclose(y[kept], 1 / keep, rtol=1e-6)
    assert abs(y.mean() - 1.0) < 5 * np.sqrt((1 - keep) / keep / n)


def test_deterministic_or_zero_rate_is_identity_and_masks_differ_per_key():
    x = jnp.arange(12.0).reshape(3, 4)
    assert Dropout(0.3).apply({}, x) is x
    assert Dropout(0.0).apply({}, x, deterministic=False) is x
    a = Dropout(0.5).apply({}, jnp.ones((4, 257)), deterministic=False, rngs={"dropout": jax.random.key(1)})
    b = Dropout(0.5).apply({}, jnp.ones((4, 257)), deterministic=False, rngs={"dropout": jax.random.key(2)})
    assert a.shape == (4, 257) and not np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="rate must be in"):
        Dropout(1.0).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)})
