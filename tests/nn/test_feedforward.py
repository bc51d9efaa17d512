import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rofjax.nn.activations import get_activation
from rofjax.nn.feedforward import FeedForward
from rofjax.parallel.topology import cuda_plugin_installed
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
    with jax.default_matmul_precision("float32"):            # on a GPU too, where the default is TF32
        got = module.apply(params, x)
    np.testing.assert_allclose(np.asarray(got), expected, atol=3e-5, rtol=3e-5)


def test_unknown_activation_lists_the_known_ones():
    with pytest.raises(ValueError, match="'gleu'.*gelu"):
        get_activation("gleu")


def test_relu_derivative_is_read_from_the_output_and_matches_the_step_function():
    from rofjax.nn.activations import relu

    x = np.array([-2.0, -0.0, 0.0, 1e-30, 3.0, np.nan], np.float32)
    step = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    grad = jax.grad(lambda v: (relu(v) * np.arange(1.0, 7.0, dtype=np.float32)).sum())(x)
    np.testing.assert_array_equal(np.asarray(grad), step * np.arange(1.0, 7.0))
    _, tangent = jax.jvp(relu, (x,), (np.full_like(x, 2.0),))
    np.testing.assert_array_equal(np.asarray(tangent), 2.0 * step)
    # The backward pass reads the output, not the pre-activation: the matmul's only user is the ReLU itself,
    # which lets XLA fold it into cuBLASLt's epilogue on a GPU.
    jaxpr = jax.make_jaxpr(jax.grad(lambda w, v: relu(v @ w).sum()))(np.ones((3, 4), np.float32),
                                                                     np.ones((2, 3), np.float32)).jaxpr
    pre_activation = next(e for e in jaxpr.eqns if e.primitive.name == "dot_general").outvars[0]
    readers = [e.primitive.name for e in jaxpr.eqns if any(v is pre_activation for v in e.invars)]
    assert readers == ["custom_jvp_call"]


@pytest.mark.skipif(not cuda_plugin_installed(), reason="needs JAX's CUDA plugin (pip install 'rofjax[gpu-aot]'; no GPU needed)")
def test_relu_folds_into_the_matmul_epilogue_of_a_step_compiled_for_a_gpu():
    """The feed-forward's first matmul writes max(x, 0) itself (cuBLASLt epilogue RELU) in a gradient step
    compiled for an H100, and no separate elementwise maximum is left."""
    from jax.sharding import NamedSharding, PartitionSpec

    from rofjax.nn.activations import relu
    from rofjax.parallel.topology import topology_devices

    mesh = jax.sharding.Mesh(np.array(topology_devices("h100")), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    shapes = [(512, 256), (256, 1024), (1024, 256)]
    args = [jax.ShapeDtypeStruct(shape, jnp.bfloat16, sharding=replicated) for shape in shapes]

    def grads(x, w_in, w_out):
        return jax.grad(lambda a, b: (relu(x @ a) @ b).astype(jnp.float32).sum(), argnums=(0, 1))(w_in, w_out)

    hlo = jax.jit(grads).trace(*args).lower(lowering_platforms=("cuda",)).compile(
        compiler_options={"xla_gpu_enable_triton_gemm": False}).as_text()
    assert hlo.count('"epilogue":"RELU"') == 1
    assert "fused_maximum" not in hlo


@pytest.mark.parametrize("name", ["gelu", "gelu_tanh"])
def test_gelu_gradients_match_the_formula_and_keep_only_the_input(name, capsys):
    from jax.ad_checkpoint import print_saved_residuals

    x = np.linspace(-4.0, 4.0, 33)
    if name == "gelu":
        cdf = 0.5 * (1 + _erf(x / math.sqrt(2)))
        expected = cdf + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    else:
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
        t = np.tanh(inner)
        expected = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x * x)
    activation = get_activation(name)
    grad = jax.vmap(jax.grad(activation))(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(grad, np.float64), expected, rtol=2e-6, atol=2e-6)
    # The backward pass recomputes the inner terms from x instead of keeping them.
    print_saved_residuals(lambda v: activation(v).sum(), jnp.ones((4, 8)))
    saved = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert saved == ["f32[4,8] from the argument v"], saved
