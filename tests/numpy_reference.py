"""Float64 numpy versions of the formulas, written from the papers and bert4keras, for the tests to compare with.

Nothing here imports rofjax: a bug in the library cannot leak into its own reference.
"""

import math

import numpy as np


def sinusoid(positions, dim, base=10000.0):
    """bert4keras `sinusoidal_embeddings`: [sin(pθ0), cos(pθ0), sin(pθ1), cos(pθ1), …], θ_i = base^(−2i/dim)."""
    positions = np.asarray(positions, np.float64)
    theta = base ** (-2.0 * np.arange(dim // 2, dtype=np.float64) / dim)
    angles = positions[..., None] * theta
    return np.stack([np.sin(angles), np.cos(angles)], axis=-1).reshape(angles.shape[:-1] + (dim,))


def rope_interleaved(x, positions, base=10000.0):
    """bert4keras `apply_rotary_position_embeddings`, x [b, n, ..., d], positions [b|1, n]."""
    x = np.asarray(x, np.float64)
    table = sinusoid(positions, x.shape[-1], base)            # [b, n, d]
    while table.ndim < x.ndim:
        table = table[:, :, None]
    cos_pos = np.repeat(table[..., 1::2], 2, axis=-1)
    sin_pos = np.repeat(table[..., ::2], 2, axis=-1)
    rotated = np.stack([-x[..., 1::2], x[..., ::2]], axis=-1).reshape(x.shape)
    return x * cos_pos + rotated * sin_pos


def rope_half(x, positions, base=10000.0):
    """GPT-NeoX "rotate half": pairs (x_i, x_{i+d/2})."""
    x = np.asarray(x, np.float64)
    d = x.shape[-1]
    theta = base ** (-2.0 * np.arange(d // 2, dtype=np.float64) / d)
    angles = np.asarray(positions, np.float64)[..., None] * theta
    while angles.ndim < x.ndim:
        angles = angles[:, :, None]
    cos, sin = np.cos(np.concatenate([angles, angles], -1)), np.sin(np.concatenate([angles, angles], -1))
    rotated = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], axis=-1)
    return x * cos + rotated * sin


def swish(x):
    return x / (1.0 + np.exp(-x))


def normalize(logits, valid, method, min_length=None):
    """Attention normalisations of kexue.fm 9105 §7.4, written per row with explicit masks, float64."""
    b = np.asarray(logits, np.float64)
    m = np.broadcast_to(np.asarray(valid, bool), b.shape).astype(np.float64)
    length = np.maximum(m.sum(-1, keepdims=True), 1.0)
    if method == "softmax":
        e = m * np.exp(b - np.max(np.where(m > 0, b, -np.inf), -1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    if method == "softmax_plus":
        if min_length is not None:
            length = np.maximum(length, min_length)
        scaled = b * np.log(length) / math.log(512)
        e = m * np.exp(scaled - np.max(np.where(m > 0, scaled, -np.inf), -1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    if method == "squared_relu":
        return m * np.maximum(b, 0) ** 2 / length
    if method == "l2":
        e = m * np.exp(b)
        return e / np.sqrt((e ** 2).sum(-1, keepdims=True))
    if method == "no_denominator":
        return m * np.exp(b)
    if method == "swish_l2":
        s = m * swish(b)
        return s / np.sqrt((s ** 2).sum(-1, keepdims=True))
    raise ValueError(method)


def zlpr(t, s):
    """log(1 + Σ t e^{−s}) + log(1 + Σ (1 − t) e^{s}) over the last axis (kexue.fm 9064)."""
    t, s = np.asarray(t, np.float64), np.asarray(s, np.float64)
    return np.log1p(np.sum(t * np.exp(-s), -1)) + np.log1p(np.sum((1 - t) * np.exp(s), -1))


def zlpr_hard(positive, s, scored=None):
    """log(1 + Σ_neg e^{s}) + log(1 + Σ_pos e^{−s}) over the last axis, ignoring entries not `scored`."""
    positive, s = np.asarray(positive, bool), np.asarray(s, np.float64)
    scored = np.ones_like(positive) if scored is None else np.asarray(scored, bool)
    neg = np.where(scored & ~positive, np.exp(np.where(scored, s, 0)), 0).sum(-1)
    pos = np.where(scored & positive, np.exp(-np.where(scored, s, 0)), 0).sum(-1)
    return np.log1p(neg) + np.log1p(pos)


def randomize(params, rng, scale=0.5):
    """Replace every leaf of a (possibly boxed) flax param tree by N(0, scale²) values of the same shape."""
    import flax.linen as nn
    import jax

    params = nn.unbox(params)
    return jax.tree_util.tree_map(lambda p: np.asarray(rng.normal(0, scale, p.shape), np.float32), params)
