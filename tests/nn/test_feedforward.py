import math

import jax
import numpy as np
import pytest

from rofjax.nn.activations import get_activation
from rofjax.nn.feedforward import FeedForward
from tests import numpy_reference as ref

_erf = np.vectorize(math.erf)


@pytest.mark.parametrize("activation,numpy_fn", [
    ("gelu", lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))),
    ("relu", lambda x: np.maximum(x, 0)),
    ("swish", ref.swish),
])
def test_feedforward_matches_formula(rng, activation, numpy_fn):
    x = rng.normal(size=(2, 5, 8)).astype(np.float32)
    module = FeedForward(intermediate_size=16, activation=activation)
    params = ref.randomize(module.init(jax.random.key(0), x), rng, scale=0.4)
    p = {k: {n: np.asarray(v, np.float64) for n, v in layer.items()} for k, layer in params["params"].items()}
    hidden = numpy_fn(x.astype(np.float64) @ p["i_dense"]["kernel"] + p["i_dense"]["bias"])
    expected = hidden @ p["o_dense"]["kernel"] + p["o_dense"]["bias"]
    np.testing.assert_allclose(np.asarray(module.apply(params, x)), expected, atol=3e-5, rtol=3e-5)


def test_unknown_activation_lists_the_known_ones():
    with pytest.raises(ValueError, match="'gleu'.*gelu"):
        get_activation("gleu")
