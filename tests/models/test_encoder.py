import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from rofjax.models import Encoder, get_preset
from rofjax.models.initializers import depth_scaled_truncated_normal
from tests import numpy_reference as ref
from tests.nn.test_rope import rope_reference

IDS = np.array([[2, 9, 17, 33, 4, 0, 0, 0], [2, 5, 48, 3, 11, 41, 6, 7]])


def _init(config, seed=0):
    return Encoder(config).init(jax.random.key(seed), IDS, method=Encoder.masked_lm)


@pytest.mark.parametrize("preset", ["roformer_tiny", "roformer_v2_tiny", "gau_alpha_tiny"])
def test_scanned_and_rematerialised_encoders_equal_the_plain_one(preset):
    from rofjax.checkpoint import stack_layers

    config = get_preset(preset)
    params = nn.unbox(_init(config))["params"]
    plain = Encoder(config).apply({"params": params}, IDS)
    for variant in (dict(scan_layers=True), dict(scan_layers=True, remat_policy="full"),
                    dict(remat_policy="dots")):
        other = config.replace(**variant)
        tree = stack_layers(params, config.num_layers) if other.scan_layers else params
        out = jax.jit(lambda p, ids, c=other: Encoder(c).apply({"params": p}, ids))(tree, IDS)
        np.testing.assert_allclose(np.asarray(out), np.asarray(plain), atol=1e-5, err_msg=str(variant))


def test_gradients_agree_between_scan_and_loop():
    from rofjax.checkpoint import stack_layers

    config = get_preset("roformer_v2_tiny")
    params = nn.unbox(_init(config))["params"]
    scanned = config.replace(scan_layers=True, remat_policy="full")

    def loss(p, c):
        return jnp.mean(Encoder(c).apply({"params": p}, IDS, method=Encoder.masked_lm) ** 2)

    g_plain = jax.grad(loss)(params, config)
    g_scan = jax.grad(loss)(stack_layers(params, 2), scanned)
    np.testing.assert_allclose(np.asarray(g_scan["transformer"]["layers"]["attention"]["q_dense"]["kernel"][1]),
                               np.asarray(g_plain["transformer"]["layer_1"]["attention"]["q_dense"]["kernel"]),
                               atol=1e-6)


def test_padding_does_not_change_real_tokens():
    config = get_preset("gau_alpha_tiny")
    variables = _init(config)
    short = np.array([[2, 9, 17, 33, 4]])
    padded = np.array([[2, 9, 17, 33, 4, 0, 0, 0, 0]])
    a = Encoder(config).apply(variables, short)
    b = Encoder(config).apply(variables, padded)
    np.testing.assert_allclose(np.asarray(b)[:, :5], np.asarray(a), atol=1e-5)


def test_residual_variants():
    base = get_preset("roformer_v2_tiny")
    # Post-norm with α = 0: every block is Norm(x + 0) and the gain-free RMSNorm is idempotent.
    alpha = base.replace(residual_mode="alpha")
    variables = _init(alpha)
    model = Encoder(alpha)
    at_zero = model.apply(variables, IDS, residual_alpha=0.0)
    embedded = model.apply(variables, IDS, 0 * IDS, method=lambda m, i, s: m.embeddings(i, s, True))
    np.testing.assert_allclose(np.asarray(at_zero), np.asarray(embedded), atol=1e-5)
    assert not np.allclose(np.asarray(model.apply(variables, IDS, residual_alpha=1.0)), np.asarray(at_zero))
    np.testing.assert_allclose(np.asarray(model.apply(variables, IDS, residual_alpha=1.0)),
                               np.asarray(Encoder(base).apply(variables, IDS)), atol=1e-6)

    pre = base.replace(norm_position="pre")
    pre_vars = _init(pre)
    out = Encoder(pre).apply(pre_vars, IDS)
    assert out.shape == (2, 8, 64) and bool(jnp.all(jnp.isfinite(out)))
    deep = base.replace(residual_mode="deepnorm", deepnorm_alpha=2.0)
    assert not np.allclose(np.asarray(Encoder(deep).apply(variables, IDS)),
                           np.asarray(Encoder(base).apply(variables, IDS)))


def test_depth_scaled_initializer_statistics():
    init = depth_scaled_truncated_normal(num_layers=24, order=3)
    kernel = np.asarray(init(jax.random.key(0), (768, 3200)))
    np.testing.assert_allclose(kernel.std(), 768 ** -0.5 * 24 ** (-1 / 3), rtol=0.01)
    assert np.abs(kernel).max() <= 2 * 1.13684723 / np.sqrt(768) * 24 ** (-1 / 3) + 1e-7
    embedding = np.asarray(init(jax.random.key(1), (12000, 64)))    # > 10000 rows: fan is the width
    np.testing.assert_allclose(embedding.std(), 64 ** -0.5 * 24 ** (-1 / 3), rtol=0.01)


def test_dropout_is_active_only_in_training():
    config = get_preset("roformer_tiny")
    variables = _init(config)
    model = Encoder(config)
    a = model.apply(variables, IDS)
    b = model.apply(variables, IDS, deterministic=False, rngs={"dropout": jax.random.key(1)})
    c = model.apply(variables, IDS, deterministic=False, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(np.asarray(a), np.asarray(b)) and not np.allclose(np.asarray(b), np.asarray(c))


def test_bfloat16_compute():
    config = get_preset("roformer_v2_tiny", dtype="bfloat16")
    variables = _init(config)
    hidden = Encoder(config).apply(variables, IDS)
    assert hidden.dtype == jnp.bfloat16
    reference = Encoder(get_preset("roformer_v2_tiny")).apply(variables, IDS)
    np.testing.assert_allclose(np.asarray(hidden, np.float32), np.asarray(reference), atol=0.1)


def test_bad_inputs_name_the_shapes():
    config = get_preset("roformer_tiny")
    variables = _init(config)
    with pytest.raises(ValueError, match=r"input_ids \[batch, length\]; got shape \(8,\)"):
        Encoder(config).apply(variables, IDS[0])
    with pytest.raises(ValueError, match=r"segment_ids \(2, 7\) must match input_ids \(2, 8\)"):
        Encoder(config).apply(variables, IDS, IDS[:, :7])


@pytest.mark.parametrize("preset", ["roformer_tiny", "roformer_v2_tiny", "gau_alpha_tiny"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_output_shapes_and_dtypes(preset, dtype):
    config = get_preset(preset, dtype=dtype, embedding_size=32)
    model = Encoder(config)

    def every_output(module, ids):
        hidden = module(ids)
        return hidden, module.mlm_logits(hidden), module.pool(hidden)

    (hidden, logits, pooled), _ = jax.eval_shape(
        lambda: model.init_with_output(jax.random.key(0), IDS, method=every_output))
    batch, length = IDS.shape
    chex.assert_shape([hidden, logits, pooled], [(batch, length, 64), (batch, length, 1000), (batch, 64)])
    chex.assert_type([hidden, logits, pooled], [jnp.dtype(dtype), jnp.float32, jnp.dtype(dtype)])


def _reference_encoder(config, params, ids, positions):
    """RoFormerV2 / GAU-α inference in float64 from our parameter tree: no biases, gain-free RMSNorm after each
    residual; RoPE with the config's base, layout and scaling."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)

    def rope(t):
        return rope_reference(t, positions, base=config.rope_base, layout=config.rope_layout,
                              scaling=config.rope_scaling, factor=config.rope_scaling_factor)

    def split(t):
        return t.reshape(t.shape[:2] + (config.num_heads, -1))

    valid = ids != config.pad_token_id
    x = ref.rms_norm(p["embeddings"]["word_embeddings"]["embedding"][ids]
                     + p["embeddings"]["token_type_embeddings"]["embedding"][0])
    for i in range(config.num_layers):
        layer = p["transformer"][f"layer_{i}"]
        if config.block_type == "gau":
            g, e, s = layer["gau"], config.intermediate_size, config.resolved_key_size
            h = ref.swish(x @ g["i_dense"]["kernel"])
            u, v, z = h[..., :e], h[..., e:2 * e], h[..., 2 * e:]
            q, k = rope(z * g["q_scaleoffset"]["gamma"]), rope(z * g["k_scaleoffset"]["gamma"])
            a = ref.normalize(np.einsum("bmd,bnd->bmn", q, k) / math.sqrt(s), valid[:, None, :], "softmax_plus")
            x = ref.rms_norm(x + (u * np.einsum("bmn,bne->bme", a, v)) @ g["o_dense"]["kernel"])
            continue
        att = layer["attention"]
        q, k, v = (split(x @ att[name]["kernel"]) for name in ("q_dense", "k_dense", "v_dense"))
        q, k = rope(q), rope(k)
        a = ref.normalize(np.einsum("bmhd,bnhd->bhmn", q, k) / math.sqrt(q.shape[-1]), valid[:, None, None, :],
                          "softmax")
        o = np.einsum("bhmn,bnhd->bmhd", a, v).reshape(x.shape)
        x = ref.rms_norm(x + o @ att["o_dense"]["kernel"])
        f = ref.ACTIVATIONS[config.hidden_act](x @ layer["feedforward"]["i_dense"]["kernel"])
        x = ref.rms_norm(x + f @ layer["feedforward"]["o_dense"]["kernel"])
    return x


@pytest.mark.parametrize("preset, rope", [
    ("roformer_v2_tiny", dict()),
    ("roformer_v2_tiny", dict(rope_layout="half")),
    ("roformer_v2_tiny", dict(rope_scaling="linear", rope_scaling_factor=4.0)),
    ("gau_alpha_tiny", dict(rope_layout="half", rope_scaling="ntk", rope_scaling_factor=8.0, rope_base=500.0)),
])
def test_rope_options_of_the_config_reach_every_layer(preset, rope, rng):
    default = get_preset(preset)
    config = default.replace(**rope)
    params = ref.randomize(_init(default)["params"], rng, scale=0.4)
    positions = np.arange(IDS.shape[1])[None] + 37
    out = np.asarray(Encoder(config).apply({"params": params}, IDS, positions=positions))
    np.testing.assert_allclose(out, _reference_encoder(config, params, IDS, positions), atol=1e-4)
    if rope:
        with_default_rope = np.asarray(Encoder(default).apply({"params": params}, IDS, positions=positions))
        assert np.abs(out - with_default_rope).max() > 0.1
