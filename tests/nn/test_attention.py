import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from rofjax.nn.attention import NORMALIZATIONS, MultiHeadAttention, attention_normalize
from tests import numpy_reference as ref


def _random_key_mask(rng, batch, length):
    lengths = rng.integers(1, length + 1, size=batch)
    return np.arange(length)[None, :] < lengths[:, None]


@pytest.mark.parametrize("method", NORMALIZATIONS)
def test_attention_normalize_matches_formula(rng, method):
    logits = rng.normal(size=(3, 2, 5, 9)).astype(np.float32) * 2
    key_mask = _random_key_mask(rng, 3, 9)[:, None, :]                 # [b, 1, k] → broadcast over heads
    got = attention_normalize(logits, key_mask, method)
    expected = ref.normalize(logits, key_mask[..., None, :], method)
    np.testing.assert_allclose(np.asarray(got), expected, atol=2e-6, rtol=2e-5)
    assert np.all(np.asarray(got)[~np.broadcast_to(key_mask[..., None, :], logits.shape)] == 0)


def test_softmax_plus_equals_softmax_at_512_valid_keys(rng):
    logits = rng.normal(size=(2, 3, 520)).astype(np.float32)
    mask = np.arange(520)[None, :] < 512
    np.testing.assert_allclose(np.asarray(attention_normalize(logits, mask, "softmax_plus")),
                               np.asarray(attention_normalize(logits, mask, "softmax")), atol=1e-7)
    short = np.arange(520)[None, :] < 40
    assert not np.allclose(np.asarray(attention_normalize(logits, short, "softmax_plus")),
                           np.asarray(attention_normalize(logits, short, "softmax")), atol=1e-4)


def test_softmax_plus_minimum_length_floor(rng):
    logits = rng.normal(size=(1, 4, 10)).astype(np.float32)
    mask = np.arange(10)[None, :] < 5
    got = attention_normalize(logits, mask, "softmax_plus", softmax_plus_min_length=16)
    expected = ref.normalize(logits, mask[:, None, :], "softmax_plus", min_length=16)
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-6)


def test_full_pair_mask_and_premasked_logits(rng):
    logits = rng.normal(size=(2, 6, 6)).astype(np.float32)
    causal = np.tril(np.ones((6, 6), bool))[None]
    for method in NORMALIZATIONS:
        np.testing.assert_allclose(np.asarray(attention_normalize(logits, causal, method)),
                                   ref.normalize(logits, causal, method), atol=2e-6, rtol=2e-5)
    premasked = np.where(causal, logits, -np.inf).astype(np.float32)
    np.testing.assert_allclose(np.asarray(attention_normalize(premasked, None, "softmax_plus")),
                               ref.normalize(logits, causal, "softmax_plus"), atol=2e-6)


def test_rows_without_valid_keys_are_zero_and_gradients_finite(rng):
    mask = jnp.asarray([[True, True, False, False], [False, False, False, False]])
    # Masked keys hold huge logits: they must not leak into the weights or turn gradients into NaN.
    logits = jnp.where(mask[:, None, :], jnp.asarray(rng.normal(size=(2, 3, 4)).astype(np.float32)) * 3, 1e4)
    for method in NORMALIZATIONS:
        weights = attention_normalize(logits, mask, method)
        assert bool(jnp.all(weights[1] == 0)), method
        grad = jax.grad(lambda z, m=method: jnp.sum(attention_normalize(z, mask, m) ** 2))(logits)
        assert bool(jnp.all(jnp.isfinite(grad))), method


def test_attention_normalize_rejects_bad_arguments():
    with pytest.raises(ValueError, match="method='softmax2'"):
        attention_normalize(jnp.zeros((2, 3, 4)), None, "softmax2")
    with pytest.raises(ValueError, match=r"\(2, 5\).*\(2, 3, 4\)"):
        attention_normalize(jnp.zeros((2, 3, 4)), jnp.ones((2, 5), bool), "softmax")
    with pytest.raises(ValueError, match=r"\(2, 3, 5\) does not broadcast.*\(2, 3, 4\)"):
        attention_normalize(jnp.zeros((2, 3, 4)), jnp.ones((2, 3, 5), bool), "softmax")
    with pytest.raises(ValueError, match=r"\(1, 1, 3, 4\).*\(2, 3, 4\)"):
        attention_normalize(jnp.zeros((2, 3, 4)), jnp.ones((1, 1, 3, 4), bool), "softmax")


def _reference_mha(params, x, mask, method, *, heads, head_size, rotary_value=False, weights_too=False):
    p = {k: {n: np.asarray(v, np.float64) for n, v in layer.items()} for k, layer in params["params"].items()}
    x = x.astype(np.float64)
    def heads_of(name):                                  # bert4keras: Dense(heads·size), reshape head-major
        flat = x @ p[name]["kernel"] + p[name]["bias"]
        return flat.reshape(flat.shape[:-1] + (heads, -1))

    q, k, v = heads_of("q_dense"), heads_of("k_dense"), heads_of("v_dense")
    positions = np.arange(x.shape[1])[None]
    q, k = ref.rope_interleaved(q, positions), ref.rope_interleaved(k, positions)
    if rotary_value:
        v = ref.rope_interleaved(v, positions)
    logits = np.einsum("bmhd,bnhd->bhmn", q, k) / math.sqrt(head_size)
    weights = ref.normalize(logits, mask[:, None, None, :], method)
    o = np.einsum("bhmn,bnhd->bmhd", weights, v)
    out = o.reshape(o.shape[:2] + (-1,)) @ p["o_dense"]["kernel"] + p["o_dense"]["bias"]
    return (out, weights) if weights_too else out


@pytest.mark.parametrize("method,fused,rotary_value", [
    ("softmax", True, False), ("softmax", False, True), ("softmax_plus", False, False), ("l2", False, False),
    ("squared_relu", False, False),
])
def test_multi_head_attention_matches_reference(rng, method, fused, rotary_value):
    heads, head_size, d = 2, 8, 12
    x = rng.normal(size=(2, 7, d)).astype(np.float32)
    mask = _random_key_mask(rng, 2, 7)
    module = MultiHeadAttention(num_heads=heads, head_size=head_size, normalization=method,
                                use_fused_softmax=fused, rotary_value=rotary_value)
    params = ref.randomize(module.init(jax.random.key(0), x, mask), rng, scale=0.4)
    got = np.asarray(module.apply(params, x, mask))
    expected = _reference_mha(params, x, mask, method, heads=heads, head_size=head_size, rotary_value=rotary_value)
    valid_rows = mask  # padded query rows are not compared: nobody reads them
    np.testing.assert_allclose(got[valid_rows], expected[valid_rows], atol=5e-5, rtol=5e-5)



@pytest.mark.parametrize("use_bias", [True, False])
def test_joint_qkv_projection_gradients_match_the_float64_reference(rng, use_bias):
    """q, k and v come from one matmul against the stacked kernels; the gradients of every projection parameter
    and of the input equal the float64 reference's, read as directional derivatives (central differences)."""
    heads, head_size, d = 2, 8, 12
    x = rng.normal(size=(2, 7, d)).astype(np.float32)
    mask = _random_key_mask(rng, 2, 7)
    readout = rng.normal(size=(2, 7, d))
    module = MultiHeadAttention(num_heads=heads, head_size=head_size, use_bias=use_bias)
    params = ref.randomize(module.init(jax.random.key(0), x, mask), rng, scale=0.4)
    masked_readout = readout * mask[..., None]            # padded query rows are not part of the function
    grads = jax.grad(lambda p, x: (module.apply(p, x, mask) * masked_readout).sum(), argnums=(0, 1))(params, x)

    def reference_loss(p, x):
        full = {k: dict(v) for k, v in p["params"].items()}
        if not use_bias:
            for layer in full.values():
                layer["bias"] = np.zeros(layer["kernel"].shape[-1])
        out = _reference_mha({"params": full}, x, mask, "softmax", heads=heads, head_size=head_size)
        return float((out * masked_readout).sum())

    for name in ("q_dense", "k_dense", "v_dense"):
        for leaf in (("kernel", "bias") if use_bias else ("kernel",)):
            direction = rng.normal(size=params["params"][name][leaf].shape)
            eps = 1e-4
            shifted = [jax.tree.map(lambda a: np.asarray(a, np.float64), params) for _ in range(2)]
            shifted[0]["params"][name][leaf] = shifted[0]["params"][name][leaf] + eps * direction
            shifted[1]["params"][name][leaf] = shifted[1]["params"][name][leaf] - eps * direction
            numeric = (reference_loss(shifted[0], x) - reference_loss(shifted[1], x)) / (2 * eps)
            analytic = float((np.asarray(grads[0]["params"][name][leaf], np.float64) * direction).sum())
            np.testing.assert_allclose(analytic, numeric, rtol=2e-4, atol=2e-4, err_msg=f"{name}/{leaf}")
    direction = rng.normal(size=x.shape)
    x64 = x.astype(np.float64)
    numeric = (reference_loss(params, x64 + 1e-4 * direction) - reference_loss(params, x64 - 1e-4 * direction)) / 2e-4
    np.testing.assert_allclose(float((np.asarray(grads[1], np.float64) * direction).sum()), numeric, rtol=2e-4,
                               atol=2e-4)

def test_fused_and_explicit_softmax_paths_agree_under_jit(rng):
    x = rng.normal(size=(2, 9, 16)).astype(np.float32)
    mask = _random_key_mask(rng, 2, 9)
    fused = MultiHeadAttention(num_heads=4, head_size=4)
    explicit = MultiHeadAttention(num_heads=4, head_size=4, use_fused_softmax=False)
    params = fused.init(jax.random.key(1), x, mask)
    a = jax.jit(fused.apply)(params, x, mask)
    b = explicit.apply(params, x, mask)
    np.testing.assert_allclose(np.asarray(a)[mask], np.asarray(b)[mask], atol=1e-5)


@pytest.mark.parametrize("per_head", [False, True])
def test_fused_path_rows_without_a_valid_key_equal_the_explicit_paths(rng, per_head):
    # jax.nn.dot_product_attention masks with a large negative number: left alone, an empty row averages the values.
    x = rng.normal(size=(3, 8, 16)).astype(np.float32)
    if per_head:
        mask = rng.random((3, 2, 8, 8)) < 0.25
        mask[0, 1, 3] = False                               # at least one empty row, in one head only
        assert not mask.any(-1).all()
    else:
        mask = np.arange(8)[None, :] < np.array([[8], [3], [0]])
    outputs, grads = {}, {}
    for fused in (True, False):
        module = MultiHeadAttention(num_heads=2, head_size=8, use_fused_softmax=fused)
        params = ref.randomize(module.init(jax.random.key(0), x), np.random.default_rng(1), scale=0.4)
        outputs[fused] = np.asarray(module.apply(params, x, mask))
        loss = lambda p, x, module=module: jnp.sum(module.apply(p, x, mask) ** 2)  # noqa: E731
        grads[fused] = jax.grad(loss, argnums=(0, 1))(params, x)
    np.testing.assert_allclose(outputs[True], outputs[False], atol=2e-5, rtol=2e-5)
    for a, b in zip(jax.tree_util.tree_leaves(grads[True]), jax.tree_util.tree_leaves(grads[False])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-4, rtol=2e-4)


def test_asking_for_intermediates_records_the_weights_of_the_fused_path(rng):
    """The fused softmax never forms the weights; asking for `intermediates` takes the explicit path, which records
    them, and gives the same output."""
    x = rng.normal(size=(2, 7, 12)).astype(np.float32)
    mask = _random_key_mask(rng, 2, 7)
    module = MultiHeadAttention(num_heads=2, head_size=6)
    params = ref.randomize(module.init(jax.random.key(0), x, mask), rng, scale=0.4)
    plain = np.asarray(module.apply(params, x, mask))
    out, state = module.apply(params, x, mask, mutable=["intermediates"])
    (weights,) = state["intermediates"]["attention_weights"]
    expected_out, expected_weights = _reference_mha(params, x, mask, "softmax", heads=2, head_size=6,
                                                    weights_too=True)
    assert weights.shape == (2, 2, 7, 7)
    by_query = lambda w: np.asarray(w).transpose(0, 2, 1, 3)[mask]         # valid query rows: [n, heads, keys]
    np.testing.assert_allclose(by_query(weights), by_query(expected_weights), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out)[mask], expected_out[mask], atol=5e-5, rtol=5e-5)
    np.testing.assert_allclose(np.asarray(out)[mask], plain[mask], atol=1e-5)


def test_probe_defect_softmax_cannot_tell_positions_on_constant_input(rng):
    """kexue.fm 9105: on identical inputs row-stochastic attention outputs the same vector everywhere."""
    x = np.broadcast_to(rng.normal(size=(1, 1, 16)), (1, 24, 16)).astype(np.float32)
    spread = {}
    for method in ("softmax", "softmax_plus", "l2", "no_denominator"):
        module = MultiHeadAttention(num_heads=2, head_size=8, normalization=method, use_fused_softmax=False)
        params = ref.randomize(module.init(jax.random.key(0), x), rng, scale=0.5)
        out = np.asarray(module.apply(params, x), np.float64)
        spread[method] = np.abs(out - out[:, :1]).max() / np.abs(out).max()
    assert spread["softmax"] < 1e-5 and spread["softmax_plus"] < 1e-5
    assert spread["l2"] > 1e-2 and spread["no_denominator"] > 1e-2


def test_parameters_have_logical_axes_and_dropout_changes_training_output(rng):
    x = rng.normal(size=(2, 5, 8)).astype(np.float32)
    module = MultiHeadAttention(num_heads=2, head_size=4, dropout_rate=0.5)
    variables = module.init(jax.random.key(0), x)
    names = {path[-2].key + "/" + path[-1].key: leaf.names for path, leaf in
             jax.tree_util.tree_leaves_with_path(variables, is_leaf=lambda v: isinstance(v, nn.Partitioned))}
    assert names["q_dense/kernel"] == ("embed", "heads")
    assert names["o_dense/kernel"] == ("heads", "embed")
    assert names["o_dense/bias"] == ("embed",)
    eval_out = module.apply(variables, x)
    train_out = module.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(3)})
    assert not np.allclose(np.asarray(eval_out), np.asarray(train_out))
    no_bias = MultiHeadAttention(num_heads=2, head_size=4, use_bias=False).init(jax.random.key(0), x)
    assert all("bias" not in layer for layer in no_bias["params"].values())


def test_bfloat16_compute_keeps_float32_params(rng):
    x = rng.normal(size=(2, 5, 8)).astype(jnp.bfloat16)
    module = MultiHeadAttention(num_heads=2, head_size=4, dtype=jnp.bfloat16)
    variables = module.init(jax.random.key(0), x)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(nn.unbox(variables)))
    out = module.apply(variables, x)
    assert out.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(out)))


def test_multi_head_attention_rejects_bad_mask_and_method():
    x = jnp.zeros((2, 5, 8))
    with pytest.raises(ValueError, match=r"\[2, 5\].*\(2, 4\)"):
        MultiHeadAttention(num_heads=2, head_size=4).init(jax.random.key(0), x, jnp.ones((2, 4), bool))
    with pytest.raises(ValueError, match="normalization='relu'"):
        MultiHeadAttention(num_heads=2, head_size=4, normalization="relu").init(jax.random.key(0), x)
