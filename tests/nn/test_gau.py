import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from rofjax.nn.gau import GatedAttentionUnit
from tests import numpy_reference as ref


def _params64(params):
    return {k: {n: np.asarray(v, np.float64) for n, v in layer.items()} for k, layer in params["params"].items()}


def _project(p, x, e, s, use_bias=True):
    h = x @ p["i_dense"]["kernel"] + (p["i_dense"]["bias"] if use_bias else 0)
    h = ref.swish(h)
    return h[..., :e], h[..., e:2 * e], h[..., 2 * e:]


def _scale_offset(p, name, z):
    return z * p[name]["gamma"] + p[name].get("beta", 0)


def _reference_gau(params, x, mask, *, e, s, method, use_bias=True, causal=False):
    """bert4keras GatedAttentionUnit.call, float64."""
    p = _params64(params)
    x = x.astype(np.float64)
    u, v, z = _project(p, x, e, s, use_bias)
    positions = np.arange(x.shape[1])[None]
    q = ref.rope_interleaved(_scale_offset(p, "q_scaleoffset", z), positions)
    k = ref.rope_interleaved(_scale_offset(p, "k_scaleoffset", z), positions)
    a = np.einsum("bmd,bnd->bmn", q, k) / math.sqrt(s)
    valid = mask[:, None, :]
    if causal:
        valid = valid & np.tril(np.ones((x.shape[1],) * 2, bool))
    weights = ref.normalize(a, valid, method)
    o = u * np.einsum("bmn,bnd->bmd", weights, v)
    return o @ p["o_dense"]["kernel"] + (p["o_dense"]["bias"] if use_bias else 0)


def _reference_mixed_chunk(params, x, mask, *, e, s, c, causal):
    """Dense float64 version of the mixed-chunk formula: the quadratic part is squared-ReLU attention restricted to
    each chunk; the linear part is Q_lin K_linᵀ V over all tokens (non-causal) or over earlier chunks (causal),
    divided by the number of tokens it sums over."""
    p = _params64(params)
    x = x.astype(np.float64)
    n = x.shape[1]
    u, v, z = _project(p, x, e, s)
    positions = np.arange(n)[None]
    maps = {name: ref.rope_interleaved(_scale_offset(p, name, z), positions)
            for name in ("q_scaleoffset", "k_scaleoffset", "lin_q_scaleoffset", "lin_k_scaleoffset")}
    chunk = np.arange(n) // c
    same_chunk = chunk[:, None] == chunk[None, :]
    quad_valid = mask[:, None, :] & same_chunk
    if causal:
        quad_valid = quad_valid & np.tril(np.ones((n, n), bool))
    a = np.einsum("bmd,bnd->bmn", maps["q_scaleoffset"], maps["k_scaleoffset"]) / math.sqrt(s)
    quad = ref.normalize(a, quad_valid, "squared_relu")
    lin_valid = mask[:, None, :] & ((chunk[None, :] < chunk[:, None]) if causal else np.ones((n, n), bool))
    lin = np.einsum("bmd,bnd->bmn", maps["lin_q_scaleoffset"], maps["lin_k_scaleoffset"]) * lin_valid
    lin = lin / np.maximum(lin_valid.sum(-1, keepdims=True), 1)
    o = u * np.einsum("bmn,bnd->bmd", quad + lin, v)
    return o @ p["o_dense"]["kernel"] + p["o_dense"]["bias"]


def _mask(rng, batch, n):
    lengths = rng.integers(n // 2, n + 1, size=batch)
    lengths[0] = n
    return np.arange(n)[None, :] < lengths[:, None]


@pytest.mark.parametrize("method,use_bias,causal", [
    ("squared_relu", True, False), ("softmax_plus", False, False), ("softmax", True, True), ("l2", True, False),
])
def test_gau_matches_bert4keras_semantics(rng, method, use_bias, causal):
    e, s, d = 16, 8, 12
    x = rng.normal(size=(2, 10, d)).astype(np.float32)
    mask = _mask(rng, 2, 10)
    module = GatedAttentionUnit(units=e, key_size=s, normalization=method, use_bias=use_bias, causal=causal)
    params = ref.randomize(module.init(jax.random.key(0), x, mask), rng, scale=0.4)
    got = np.asarray(module.apply(params, x, mask))
    expected = _reference_gau(params, x, mask, e=e, s=s, method=method, use_bias=use_bias, causal=causal)
    np.testing.assert_allclose(got[mask], expected[mask], atol=5e-5, rtol=5e-5)


def test_gau_parameter_layout(rng):
    x = jnp.zeros((1, 4, 12))
    variables = GatedAttentionUnit(units=16, key_size=8, use_bias=False).init(jax.random.key(0), x)
    shapes = jax.tree_util.tree_map(lambda v: v.shape, nn.unbox(variables))["params"]
    assert shapes == {"i_dense": {"kernel": (12, 40)}, "q_scaleoffset": {"gamma": (8,)},
                      "k_scaleoffset": {"gamma": (8,)}, "o_dense": {"kernel": (16, 12)}}
    boxed = variables["params"]
    assert boxed["i_dense"]["kernel"].names == ("embed", "mlp")
    assert boxed["q_scaleoffset"]["gamma"].names == ("kv",)


@pytest.mark.parametrize("causal", [False, True])
def test_mixed_chunk_attention_matches_dense_formula(rng, causal):
    e, s, d, c, n = 8, 8, 12, 4, 11                     # 11 tokens: the last chunk is padded
    x = rng.normal(size=(2, n, d)).astype(np.float32)
    mask = _mask(rng, 2, n)
    module = GatedAttentionUnit(units=e, key_size=s, chunk_size=c, causal=causal)
    params = ref.randomize(module.init(jax.random.key(0), x, mask), rng, scale=0.4)
    got = np.asarray(module.apply(params, x, mask))
    expected = _reference_mixed_chunk(params, x, mask, e=e, s=s, c=c, causal=causal)
    np.testing.assert_allclose(got[mask], expected[mask], atol=5e-5, rtol=5e-5)


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_causal_outputs_ignore_the_future(rng, chunk_size):
    x = rng.normal(size=(1, 12, 8)).astype(np.float32)
    module = GatedAttentionUnit(units=8, key_size=8, chunk_size=chunk_size, causal=True)
    params = module.init(jax.random.key(0), x)
    changed = x.copy()
    changed[:, 7:] = rng.normal(size=changed[:, 7:].shape)
    a, b = np.asarray(module.apply(params, x)), np.asarray(module.apply(params, changed))
    np.testing.assert_allclose(a[:, :7], b[:, :7], atol=1e-6)
    assert not np.allclose(a[:, 7:], b[:, 7:])


def test_mixed_chunk_cost_grows_linearly_with_length():
    module = GatedAttentionUnit(units=32, key_size=16, chunk_size=64)
    full = GatedAttentionUnit(units=32, key_size=16)
    params = module.init(jax.random.key(0), jnp.zeros((1, 64, 16)))
    full_params = {"params": {k: v for k, v in params["params"].items() if not k.startswith("lin_")}}

    def flops(mod, p, n):
        compiled = jax.jit(mod.apply).lower(p, jnp.zeros((1, n, 16))).compile()
        analysis = compiled.cost_analysis()
        analysis = analysis[0] if isinstance(analysis, list | tuple) else analysis
        return analysis["flops"]

    chunked_ratio = flops(module, params, 2048) / flops(module, params, 1024)
    full_ratio = flops(full, full_params, 2048) / flops(full, full_params, 1024)
    assert chunked_ratio < 2.2, chunked_ratio
    assert full_ratio > 2.8, full_ratio


def test_gau_output_is_much_smaller_than_input_at_init(rng):
    """kexue.fm 8990: with LeCun init, s = 128 and n = 512, GAU(x) is ~0.01·x at init, so Post-Norm GAU layers
    start near the identity and need no warmup.

    The post's estimate s·ν⁶/n ≈ 0.011 keeps only the diagonal of A; the n − 1 off-diagonal entries (each ≈ sμ⁴/n,
    with v of mean μ) add about as much again, and this configuration measures ≈ 0.03. What the argument needs,
    and what is checked, is that the branch is well over an order of magnitude below its unit-variance input.
    """
    d, n, s = 256, 512, 128
    x = rng.normal(size=(1, n, d)).astype(np.float32)
    module = GatedAttentionUnit(units=2 * d, key_size=s, use_bias=False,
                                kernel_init=nn.initializers.variance_scaling(1.0, "fan_in", "normal"))
    params = module.init(jax.random.key(0), x)
    rms = float(np.sqrt(np.mean(np.asarray(module.apply(params, x), np.float64) ** 2)))
    diagonal_estimate = s * 0.355776 ** 3 / n
    assert diagonal_estimate < rms < 0.05, (rms, diagonal_estimate)


def test_gau_rejects_bad_arguments():
    x = jnp.zeros((2, 5, 8))
    with pytest.raises(ValueError, match=r"batch=2, length=5; got \(2, 4\)"):
        GatedAttentionUnit(units=8, key_size=4).init(jax.random.key(0), x, jnp.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"key mask \[batch, length\] only; got a full mask \(2, 1, 5, 5\)"):
        GatedAttentionUnit(units=8, key_size=4, chunk_size=2).init(jax.random.key(0), x,
                                                                   jnp.ones((2, 1, 5, 5), bool))
    with pytest.raises(ValueError, match="normalization='relu'"):
        GatedAttentionUnit(units=8, key_size=4, normalization="relu").init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="head_dim=5"):
        GatedAttentionUnit(units=8, key_size=5).init(jax.random.key(0), x)


def test_full_mask_keeps_packed_documents_apart(rng):
    """A [batch, 1, n, n] mask of two packed documents gives each the output it has alone."""
    module = GatedAttentionUnit(units=8, key_size=8, normalization="softmax_plus")
    x = rng.normal(size=(1, 7, 8)).astype(np.float32)
    params = module.init(jax.random.key(0), x)
    doc = np.array([1, 1, 1, 2, 2, 2, 2])
    pair = (doc[:, None] == doc[None, :])[None, None]
    positions = np.array([[0, 1, 2, 0, 1, 2, 3]])
    packed = np.asarray(module.apply(params, x, pair, positions=positions))
    first = np.asarray(module.apply(params, x[:, :3]))
    second = np.asarray(module.apply(params, x[:, 3:]))
    np.testing.assert_allclose(packed, np.concatenate([first, second], axis=1), atol=1e-5)
