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


# Whole encoders on published (bert4keras) weight names ------------------------------------------------------


def gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


ACTIVATIONS = {"gelu": gelu, "relu": lambda x: np.maximum(x, 0.0), "swish": swish}


def layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def rms_norm(x, eps=1e-12):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps)


def encoder_forward(weights, family, bert_config, input_ids, segment_ids=None):
    """bert4keras RoFormer / RoFormerV2 / GAU_alpha forward pass (inference), float64, from checkpoint names."""
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    ids = np.asarray(input_ids)
    seg = np.zeros_like(ids) if segment_ids is None else np.asarray(segment_ids)
    act = ACTIVATIONS[bert_config["hidden_act"]]
    v1 = family == "roformer"

    def norm(x, scope):
        return layer_norm(x, w[scope + "/gamma"], w[scope + "/beta"]) if v1 else rms_norm(x)

    def linear(x, scope):
        return x @ w[scope + "/kernel"] + (w[scope + "/bias"] if v1 else 0.0)

    x = w["bert/embeddings/word_embeddings"][ids] + w["bert/embeddings/token_type_embeddings"][seg]
    x = norm(x, "bert/embeddings/LayerNorm")
    if "bert/encoder/embedding_hidden_mapping_in/kernel" in w:
        x = linear(x, "bert/encoder/embedding_hidden_mapping_in")
    valid = ids != 0
    positions = np.arange(ids.shape[1])[None]
    for i in range(bert_config["num_hidden_layers"]):
        if family == "gau_alpha":
            p = f"GAU_alpha/encoder/layer_{i}/gau/"
            e, s = bert_config["intermediate_size"], bert_config.get("attention_key_size", 128)
            h = swish(x @ w[p + "i_dense/kernel"])
            u, v, z = h[..., :e], h[..., e:2 * e], h[..., 2 * e:]
            q = rope_interleaved(z * w[p + "q_scaleoffset/gamma"], positions)
            k = rope_interleaved(z * w[p + "k_scaleoffset/gamma"], positions)
            a = np.einsum("bmd,bnd->bmn", q, k) / math.sqrt(s)
            o = (u * np.einsum("bmn,bnd->bmd", normalize(a, valid[:, None, :], "softmax_plus"), v))
            x = rms_norm(x + o @ w[p + "o_dense/kernel"])
            continue
        p = f"bert/encoder/layer_{i}/"
        heads = bert_config["num_attention_heads"]

        def split(t, heads=heads):
            return t.reshape(t.shape[:2] + (heads, -1))

        q = rope_interleaved(split(linear(x, p + "attention/self/query")), positions)
        k = rope_interleaved(split(linear(x, p + "attention/self/key")), positions)
        v = split(linear(x, p + "attention/self/value"))
        a = np.einsum("bmhd,bnhd->bhmn", q, k) / math.sqrt(q.shape[-1])
        o = np.einsum("bhmn,bnhd->bmhd", normalize(a, valid[:, None, None, :], "softmax"), v)
        x = norm(x + linear(o.reshape(x.shape[:2] + (-1,)), p + "attention/output/dense"),
                 p + "attention/output/LayerNorm")
        f = linear(act(linear(x, p + "intermediate/dense")), p + "output/dense")
        x = norm(x + f, p + "output/LayerNorm")
    return x


def bert4keras_weights(family, bert_config, rng, *, with_mlm=False, scale=0.2):
    """Random weights under the exact checkpoint names bert4keras writes (seeds-spec §12), float32."""
    V, H, L = bert_config["vocab_size"], bert_config["hidden_size"], bert_config["num_hidden_layers"]
    F = bert_config["intermediate_size"]
    E = bert_config.get("embedding_size", H)
    shapes = {"bert/embeddings/word_embeddings": (V, E),
              "bert/embeddings/token_type_embeddings": (bert_config.get("type_vocab_size", 2), E)}
    v1 = family == "roformer"
    if v1:
        shapes.update({"bert/embeddings/LayerNorm/beta": (E,), "bert/embeddings/LayerNorm/gamma": (E,)})
    if E != H:
        shapes["bert/encoder/embedding_hidden_mapping_in/kernel"] = (E, H)
        if v1:
            shapes["bert/encoder/embedding_hidden_mapping_in/bias"] = (H,)
    for i in range(L):
        if family == "gau_alpha":
            s = bert_config.get("attention_key_size", 128)
            p = f"GAU_alpha/encoder/layer_{i}/gau/"
            shapes.update({p + "i_dense/kernel": (H, 2 * F + s), p + "q_scaleoffset/gamma": (s,),
                           p + "k_scaleoffset/gamma": (s,), p + "o_dense/kernel": (F, H)})
            continue
        p = f"bert/encoder/layer_{i}/"
        for sub in ("attention/self/query", "attention/self/key", "attention/self/value", "attention/output/dense"):
            shapes[f"{p}{sub}/kernel"] = (H, H)
            if v1:
                shapes[f"{p}{sub}/bias"] = (H,)
        shapes[p + "intermediate/dense/kernel"] = (H, F)
        shapes[p + "output/dense/kernel"] = (F, H)
        if v1:
            shapes.update({p + "intermediate/dense/bias": (F,), p + "output/dense/bias": (H,)})
            for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
                shapes.update({f"{p}{norm}/beta": (H,), f"{p}{norm}/gamma": (H,)})
    if with_mlm and v1:
        shapes.update({"cls/predictions/transform/dense/kernel": (H, E), "cls/predictions/transform/dense/bias": (E,),
                       "cls/predictions/transform/LayerNorm/beta": (E,),
                       "cls/predictions/transform/LayerNorm/gamma": (E,), "cls/predictions/output_bias": (V,)})
    weights = {}
    for name, shape in shapes.items():
        value = rng.normal(0.0, scale, shape)
        if name.endswith("gamma"):
            value = 1.0 + value
        weights[name] = value.astype(np.float32)
    return weights
