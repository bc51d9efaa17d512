import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rofjax.nn import rope
from rofjax.nn.rope import apply_rotary, half_to_interleaved, interleaved_to_half
from tests import numpy_reference as ref


def test_interleaved_matches_bert4keras_formula(rng):
    x = rng.normal(size=(2, 7, 3, 16)).astype(np.float32)
    positions = rng.integers(0, 512, size=(2, 7))
    got = apply_rotary(x, positions)
    np.testing.assert_allclose(np.asarray(got), ref.rope_interleaved(x, positions), atol=2e-5, rtol=1e-5)


def test_far_positions_are_within_float32_angle_precision(rng):
    x = rng.normal(size=(1, 4, 1, 16)).astype(np.float32)
    positions = np.array([[5000, 12345, 65536, 99999]])
    got = np.asarray(apply_rotary(x, positions))
    # Angles m·θ are float32 (as in bert4keras): their error is about m·2⁻²⁴ radians.
    bound = 4 * positions.max() * 2.0 ** -24 * np.abs(x).max()
    np.testing.assert_allclose(got, ref.rope_interleaved(x, positions), atol=bound)


def test_default_positions_are_arange_and_three_dim_inputs_work(rng):
    x = rng.normal(size=(2, 9, 8)).astype(np.float32)
    got = apply_rotary(x)
    np.testing.assert_allclose(np.asarray(got), ref.rope_interleaved(x, np.arange(9)[None]), atol=1e-5)


def test_half_layout_matches_rotate_half_formula(rng):
    x = rng.normal(size=(1, 5, 2, 12)).astype(np.float32)
    positions = np.arange(3, 8)
    got = apply_rotary(x, positions, layout="half", base=500.0)
    np.testing.assert_allclose(np.asarray(got), ref.rope_half(x, positions[None], base=500.0), atol=1e-5)


def test_layouts_agree_after_permutation(rng):
    q = rng.normal(size=(2, 6, 2, 10)).astype(np.float32)
    k = rng.normal(size=(2, 6, 2, 10)).astype(np.float32)
    scores_interleaved = jnp.einsum("bmhd,bnhd->bhmn", apply_rotary(q), apply_rotary(k))
    q_half, k_half = interleaved_to_half(q), interleaved_to_half(k)
    scores_half = jnp.einsum("bmhd,bnhd->bhmn", apply_rotary(q_half, layout="half"),
                             apply_rotary(k_half, layout="half"))
    np.testing.assert_allclose(np.asarray(scores_interleaved), np.asarray(scores_half), atol=1e-4)
    np.testing.assert_allclose(np.asarray(interleaved_to_half(apply_rotary(q))),
                               np.asarray(apply_rotary(q_half, layout="half")), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(half_to_interleaved(q_half)), q)


@pytest.mark.parametrize("layout", ["interleaved", "half"])
def test_scores_depend_on_relative_position_only(rng, layout):
    n, d = 12, 16
    q = np.broadcast_to(rng.normal(size=(1, 1, 1, d)), (1, n, 1, d)).astype(np.float32)
    k = np.broadcast_to(rng.normal(size=(1, 1, 1, d)), (1, n, 1, d)).astype(np.float32)

    def scores(offset):
        positions = np.arange(n) + offset
        return np.asarray(jnp.einsum("bmhd,bnhd->mn", apply_rotary(q, positions, layout=layout),
                                     apply_rotary(k, positions, layout=layout)))

    s = scores(0)
    for delta in range(-n + 1, n):
        np.testing.assert_allclose(np.diagonal(s, delta), np.full(n - abs(delta), np.diagonal(s, delta)[0]),
                                   atol=1e-4)
    np.testing.assert_allclose(scores(517), s, atol=1e-3)


def test_rotation_preserves_norm_and_dtype(rng):
    x = rng.normal(size=(2, 4, 2, 8)).astype(np.float32)
    y = apply_rotary(x, np.arange(100, 104))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(y), axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
    assert apply_rotary(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_no_length_cap():
    x = jnp.ones((1, 20000, 1, 4), jnp.float32)
    y = apply_rotary(x)
    assert y.shape == x.shape and bool(jnp.all(jnp.isfinite(y)))


def test_sinusoidal_embeddings_are_interleaved_sin_cos():
    positions = np.arange(11)
    np.testing.assert_allclose(np.asarray(rope.sinusoidal_embeddings(positions, 8)), ref.sinusoid(positions, 8),
                               atol=1e-5)


def test_ntk_and_linear_scaling(rng):
    d, base, factor = 16, 10000.0, 4.0
    theta = np.asarray(rope.rotary_frequencies(d, base=base, scaling="ntk", scaling_factor=factor))
    expected = (base * factor ** (d / (d - 2))) ** (-2.0 * np.arange(d // 2) / d)
    np.testing.assert_allclose(theta, expected, rtol=1e-5)
    assert theta[0] == pytest.approx(1.0)
    assert theta[-1] == pytest.approx(base ** (-(d - 2) / d) / factor, rel=1e-5)
    x = rng.normal(size=(1, 6, 1, d)).astype(np.float32)
    positions = np.arange(0, 24, 4)
    np.testing.assert_allclose(np.asarray(apply_rotary(x, positions, scaling="linear", scaling_factor=factor)),
                               np.asarray(apply_rotary(x, positions // 4)), atol=1e-5)


def test_jit_matches_eager(rng):
    x = rng.normal(size=(2, 5, 2, 8)).astype(np.float32)
    positions = rng.integers(0, 50, size=(2, 5))
    jitted = jax.jit(apply_rotary, static_argnames=("layout",))
    np.testing.assert_allclose(np.asarray(jitted(x, positions)), np.asarray(apply_rotary(x, positions)), atol=1e-6)


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match=r"head_dim=7.*\(2, 3, 1, 7\)"):
        apply_rotary(jnp.zeros((2, 3, 1, 7)))
    with pytest.raises(ValueError, match=r"positions.*\(4,\)"):
        apply_rotary(jnp.zeros((2, 3, 1, 8)), jnp.arange(4))
    with pytest.raises(ValueError, match="layout='rotate'"):
        apply_rotary(jnp.zeros((2, 3, 1, 8)), layout="rotate")
    with pytest.raises(ValueError, match=r"shape \(3, 8\)"):
        apply_rotary(jnp.zeros((3, 8)))
    with pytest.raises(ValueError, match="scaling='yarn'"):
        apply_rotary(jnp.zeros((1, 3, 1, 8)), scaling="yarn")


def rope_reference(x, positions, *, base=10000.0, layout="interleaved", scaling="none", factor=1.0):
    """Float64 RoPE with long-context scaling: linear divides positions by the factor, NTK raises the base to
    `base · factor^(d/(d−2))`."""
    d = np.shape(x)[-1]
    positions = np.asarray(positions, np.float64) / (factor if scaling == "linear" else 1.0)
    base = base * factor ** (d / (d - 2)) if scaling == "ntk" else base
    return (ref.rope_half if layout == "half" else ref.rope_interleaved)(x, positions, base=base)


@pytest.mark.parametrize("options", [dict(), dict(layout="half"), dict(scaling="linear", scaling_factor=3.0),
                                     dict(base=500.0, layout="half", scaling="ntk", scaling_factor=4.0)])
def test_rope_options_rotate_like_the_float64_formula(rng, options):
    x = rng.normal(size=(2, 6, 3, 12)).astype(np.float32)
    positions = rng.integers(0, 300, size=(2, 6))
    got = np.asarray(rope.RopeOptions(**options).rotate(x, positions))
    expected = rope_reference(x, positions, base=options.get("base", 10000.0), layout=options.get("layout"),
                              scaling=options.get("scaling", "none"), factor=options.get("scaling_factor", 1.0))
    np.testing.assert_allclose(got, expected, atol=2e-4, rtol=1e-4)
    np.testing.assert_array_equal(got, np.asarray(apply_rotary(x, positions, **options)))


def test_rope_options_are_checked_when_made_and_are_hashable():
    assert rope.RopeOptions() == rope.RopeOptions(10000.0, "interleaved", "none", 1.0)
    assert len({rope.RopeOptions(), rope.RopeOptions(), rope.RopeOptions(layout="half")}) == 2
    with pytest.raises(ValueError, match="layout='rotate'"):
        rope.RopeOptions(layout="rotate")
    with pytest.raises(ValueError, match="scaling='yarn'"):
        rope.RopeOptions(scaling="yarn")
    with pytest.raises(ValueError, match="scaling_factor must be > 0; got 0"):
        rope.RopeOptions(scaling="linear", scaling_factor=0)
    with pytest.raises(ValueError, match="base must be > 1; got 1.0"):
        rope.RopeOptions(base=1.0)
