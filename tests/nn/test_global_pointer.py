import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from rofjax.nn.global_pointer import EfficientGlobalPointer, GlobalPointer
from tests import numpy_reference as ref


def _mask(rng, batch, n):
    lengths = rng.integers(2, n + 1, size=batch)
    return np.arange(n)[None, :] < lengths[:, None]


def _apply_masks(logits, mask, tril):
    n = logits.shape[-1]
    allowed = mask[:, None, :, None] & mask[:, None, None, :]
    if tril:
        allowed = allowed & (np.arange(n)[:, None] <= np.arange(n)[None, :])
    return np.where(allowed, logits, -np.inf)


def _reference_gp(params, x, mask, heads, d, rope, tril):
    """bert4keras GlobalPointer.call: dense → heads blocks of [q | k] → RoPE → einsum / √d → masks."""
    p = {k: np.asarray(v, np.float64) for k, v in params["params"]["dense"].items()}
    b, n, _ = x.shape
    flat = x.astype(np.float64) @ p["kernel"].reshape(x.shape[-1], -1) + p["bias"].reshape(-1)
    blocks = np.stack(np.split(flat, heads, axis=-1), axis=-2)        # [b, n, h, 2d]
    q, k = blocks[..., :d], blocks[..., d:]
    if rope:
        q, k = ref.rope_interleaved(q, np.arange(n)[None]), ref.rope_interleaved(k, np.arange(n)[None])
    return _apply_masks(np.einsum("bmhd,bnhd->bhmn", q, k) / math.sqrt(d), mask, tril)


def _reference_egp(params, x, mask, heads, d, rope, tril):
    """bert4keras EfficientGlobalPointer.call, float64."""
    p = {k: {n: np.asarray(v, np.float64) for n, v in layer.items()} for k, layer in params["params"].items()}
    n = x.shape[1]
    P = x.astype(np.float64) @ p["p_dense"]["kernel"] + p["p_dense"]["bias"]
    q, k = P[..., ::2], P[..., 1::2]
    if rope:
        q, k = ref.rope_interleaved(q, np.arange(n)[None]), ref.rope_interleaved(k, np.arange(n)[None])
    logits = np.einsum("bmd,bnd->bmn", q, k) / math.sqrt(d)
    bias = np.einsum("bnh->bhn", P @ p["q_dense"]["kernel"] + p["q_dense"]["bias"]) / 2
    logits = logits[:, None] + bias[:, ::2, None] + bias[:, 1::2, :, None]
    return _apply_masks(logits, mask, tril)


@pytest.mark.parametrize("module_cls,reference", [(GlobalPointer, _reference_gp),
                                                  (EfficientGlobalPointer, _reference_egp)])
@pytest.mark.parametrize("rope,tril", [(True, True), (False, False)])
def test_pointer_matches_bert4keras(rng, module_cls, reference, rope, tril):
    heads, d = 3, 8
    x = rng.normal(size=(2, 9, 16)).astype(np.float32)
    mask = _mask(rng, 2, 9)
    module = module_cls(heads=heads, head_size=d, use_rope=rope, tril_mask=tril)
    params = ref.randomize(module.init(jax.random.key(0), x, mask), rng, scale=0.3)
    got = np.asarray(module.apply(params, x, mask))
    expected = reference(params, x, mask, heads, d, rope, tril)
    assert got.shape == (2, heads, 9, 9)
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], atol=5e-5, rtol=5e-5)


def test_efficient_bias_comes_from_unrotated_projection(rng):
    """Changing only the positions (RoPE) moves the q·k term, never the class bias: compare two offsets."""
    x = rng.normal(size=(1, 6, 8)).astype(np.float32)
    module = EfficientGlobalPointer(heads=2, head_size=4, tril_mask=False)
    params = ref.randomize(module.init(jax.random.key(0), x), rng, scale=0.3)
    a = np.asarray(module.apply(params, x, positions=np.arange(6)))
    b = np.asarray(module.apply(params, x, positions=np.arange(6) + 40))
    # q·k is relative (unchanged by the offset), and the bias does not depend on position: identical logits.
    np.testing.assert_allclose(a, b, atol=2e-4)


def test_parameter_layout_and_logical_axes():
    x = jnp.zeros((1, 5, 16))
    gp = GlobalPointer(heads=3, head_size=8).init(jax.random.key(0), x)["params"]
    assert gp["dense"]["kernel"].value.shape == (16, 48) and gp["dense"]["kernel"].names == ("embed", "heads")
    egp = EfficientGlobalPointer(heads=3, head_size=8, use_bias=False).init(jax.random.key(0), x)["params"]
    shapes = jax.tree_util.tree_map(lambda v: v.shape, nn.unbox(egp))
    assert shapes == {"p_dense": {"kernel": (16, 16)}, "q_dense": {"kernel": (16, 6)}}


def test_pointer_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"\[2, 5\].*\(2, 6\)"):
        GlobalPointer(heads=2, head_size=4).init(jax.random.key(0), jnp.zeros((2, 5, 8)), jnp.ones((2, 6), bool))
    with pytest.raises(ValueError, match=r"head_dim=5"):
        EfficientGlobalPointer(heads=2, head_size=5).init(jax.random.key(0), jnp.zeros((2, 5, 8)))
    with pytest.raises(ValueError, match=r"\(5, 8\)"):
        GlobalPointer(heads=2, head_size=4).init(jax.random.key(0), jnp.zeros((5, 8)))
