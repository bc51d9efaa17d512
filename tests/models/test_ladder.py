"""Ladder Side-Tuning side networks against a float64 numpy version of their formulas (seeds-spec §8.3, §8.4), and
what makes them cheap: no gradient reaches the backbone."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from rofjax.models import get_preset
from rofjax.models.encoder import Encoder
from rofjax.models.ladder import (
    feeding_layers,
    fingerprint,
    fisher_pruned_side,
    merge_backbone,
    side_config,
    split_backbone,
    trainable_count,
)
from tests.numpy_reference import gelu, layer_norm, randomize


def _dense(x, p):
    return x @ p["kernel"] + p.get("bias", 0.0)


def _bert_block(x, p, heads, valid):
    """One post-LN BERT block (no positions inside), float64, on rofjax parameter names."""
    def split(t):
        return t.reshape(t.shape[:2] + (heads, -1))

    a = p["attention"]
    q, k, v = split(_dense(x, a["q_dense"])), split(_dense(x, a["k_dense"])), split(_dense(x, a["v_dense"]))
    logits = np.einsum("bmhd,bnhd->bhmn", q, k) / math.sqrt(q.shape[-1])
    logits = np.where(valid[:, None, None, :], logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    o = np.einsum("bhmn,bnhd->bmhd", weights, v).reshape(x.shape[:2] + (-1,))
    x = layer_norm(x + _dense(o, a["o_dense"]), p["attention_norm"]["gamma"], p["attention_norm"]["beta"])
    f = _dense(gelu(_dense(x, p["feedforward"]["i_dense"])), p["feedforward"]["o_dense"])
    return layer_norm(x + f, p["feedforward_norm"]["gamma"], p["feedforward_norm"]["beta"])


def _numpy_lst(params, config, ids):
    """The whole LST encoder (BERT backbone, `su` or `gated` side network) in float64."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    e, valid = p["embeddings"], ids != 0
    x = e["word_embeddings"]["embedding"][ids] + e["token_type_embeddings"]["embedding"][np.zeros_like(ids)]
    x = x + e["position_embeddings"]["embedding"][np.arange(ids.shape[1])][None]
    embedded = layer_norm(x, e["norm"]["gamma"], e["norm"]["beta"])
    outputs, h = [], embedded
    for i in range(config.num_layers):
        h = _bert_block(h, p["transformer"][f"layer_{i}"], config.num_heads, valid)
        outputs.append(h)
    side, heads = p["side"], side_config(config).num_heads
    if config.lst == "su":
        s = embedded @ side["embedding_projection"]["kernel"]
        for i, layer in enumerate(feeding_layers(config)):
            s = _bert_block(s, side[f"layer_{i}"], heads, valid)
            s = s + outputs[layer] @ side[f"ladder_{i}"]["kernel"]
        return s
    s = _dense(embedded, side["embedding_projection"])
    for j, layer in enumerate(feeding_layers(config)):
        mu = 1.0 / (1.0 + np.exp(-side[f"gate_{j}"] / config.side_gate_temperature))
        s = mu * s + (1.0 - mu) * _dense(outputs[layer], side[f"ladder_{j}"])
        s = _bert_block(s, side[f"layer_{j}"], heads, valid)
    s = layer_norm(s, side["final_norm"]["gamma"], side["final_norm"]["beta"])
    return _dense(s, side["up_projection"])


IDS = np.array([[2, 17, 45, 99, 3, 0, 0], [2, 8, 8, 41, 300, 12, 3]], np.int32)


@pytest.mark.parametrize("design,overrides", [("su", dict(num_layers=4)),
                                              ("gated", dict(num_layers=3, side_layers=(0, 2)))])
def test_side_network_matches_numpy(design, overrides):
    config = get_preset("bert_tiny", lst=design, **overrides)
    model = Encoder(config)
    params = randomize(jax.eval_shape(model.init, jax.random.key(0), IDS)["params"], np.random.default_rng(1), scale=0.3)
    if design == "gated":
        params["side"]["gate_0"], params["side"]["gate_1"] = np.float32(0.07), np.float32(-0.2)
    got = np.asarray(jax.jit(model.apply)({"params": params}, IDS))
    want = _numpy_lst(params, config, IDS)
    valid = IDS != 0
    np.testing.assert_allclose(got[valid], want[valid], rtol=2e-4, atol=2e-4)


def test_su_side_network_has_the_published_size_on_a_base_backbone():
    """4 side blocks × 198,272 + 5 ladder projections × 98,304 (seeds-spec §8.3), fed by layers 2, 5, 8, 11."""
    config = get_preset("roberta_wwm_ext_chinese_base", lst="su")
    params = nn.unbox(jax.eval_shape(lambda: Encoder(config).init(jax.random.key(0), IDS)["params"]))
    assert trainable_count({"encoder": params}, config) == 4 * 198_272 + 5 * 98_304 == 1_284_608
    assert feeding_layers(config) == (2, 5, 8, 11)
    gated = get_preset("roberta_wwm_ext_chinese_base", lst="gated")
    assert side_config(gated).hidden_size == 96 and side_config(gated).resolved_head_size == 8
    assert feeding_layers(gated) == tuple(range(12))


def test_no_gradient_reaches_the_backbone():
    config = get_preset("bert_tiny", lst="gated", num_layers=1, intermediate_size=64)
    model = Encoder(config)
    params = jax.jit(model.init)(jax.random.key(0), IDS)["params"]
    grads = jax.jit(jax.grad(lambda p: jnp.sum(model.apply({"params": p}, IDS) ** 2)))(nn.unbox(params))
    trained, frozen = split_backbone({"encoder": grads}, config)
    assert sorted(frozen["encoder"]) == ["embeddings", "transformer"]
    assert all(not np.any(np.asarray(g)) for g in jax.tree_util.tree_leaves(frozen))
    assert all(np.any(np.asarray(g)) for g in jax.tree_util.tree_leaves(trained["encoder"]["side"]))


def test_split_and_merge_are_inverse_and_the_fingerprint_names_the_backbone():
    config = get_preset("bert_tiny", lst="gated")
    shapes = jax.eval_shape(Encoder(config).init, jax.random.key(0), IDS)["params"]
    params = {"encoder": randomize(shapes, np.random.default_rng(0)),
              "classifier": {"kernel": np.ones((64, 2), np.float32)}}
    trained, frozen = split_backbone(params, config)
    assert sorted(trained) == ["classifier", "encoder"] and sorted(trained["encoder"]) == ["side"]
    merged = merge_backbone(trained, frozen)
    assert jax.tree_util.tree_structure(merged) == jax.tree_util.tree_structure(params)
    changed = jax.tree_util.tree_map(lambda x: x, frozen)
    changed["encoder"]["embeddings"]["norm"]["beta"] = changed["encoder"]["embeddings"]["norm"]["beta"] + 1e-6
    assert fingerprint(frozen) == fingerprint(jax.tree_util.tree_map(np.asarray, frozen)) != fingerprint(changed)
    assert split_backbone(params, config.replace(lst="none")) == (params, None)


def test_backbone_only_heads_and_bad_side_settings_are_refused():
    config = get_preset("bert_tiny", lst="su", num_layers=4)
    model = Encoder(config)
    with pytest.raises(ValueError, match="pooler.*frozen backbone.*pooling 'cls' or 'mean'"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), IDS, method=lambda m, ids: m.pool(m(ids))))
    with pytest.raises(ValueError, match="side_layers \\[5\\] are not layers of a 2-layer backbone"):
        get_preset("bert_tiny", lst="gated", side_layers=(0, 5))
    with pytest.raises(ValueError, match="lst='su' needs at least side_num_layers=4 backbone layers"):
        get_preset("bert_tiny", lst="su")
    with pytest.raises(ValueError, match="lst="):
        get_preset("bert_tiny", lst="adapter")


def test_training_flops_count_the_backbone_forward_only():
    from rofjax.models.flops import encoder_forward_flops, encoder_training_flops

    full = get_preset("roberta_wwm_ext_chinese_base")
    su = full.replace(lst="su")
    side = side_config(su)
    ladders = 2 * 128 * 768 * 128 * 5
    assert encoder_training_flops(full, 128) == 3 * encoder_forward_flops(full, 128)
    assert encoder_training_flops(su, 128) == encoder_forward_flops(full, 128) + 3 * (
        encoder_forward_flops(side, 128) + ladders)
    with pytest.raises(ValueError, match="side_layers=\\(\\) leaves the side network without inputs"):
        full.replace(lst="gated", side_layers=())


@pytest.mark.parametrize("preset,sees_order", [("bert_tiny", False), ("roformer_v2_tiny", True)])
def test_su_side_blocks_see_token_order_through_the_backbones_position_scheme(preset, sees_order):
    """A BERT backbone hands the side network positions in its embeddings, so the side blocks themselves are
    order-blind (permuting their inputs permutes their outputs); a RoPE backbone's embeddings hold no positions,
    so its side blocks rotate q and k as the backbone does and are not."""
    from rofjax.models.ladder import SideNetwork

    config = get_preset(preset, lst="su", num_layers=4)
    assert side_config(config).position_embedding == config.position_embedding
    rng = np.random.default_rng(0)
    length = 6
    embedded = rng.normal(size=(1, length, config.hidden_size)).astype(np.float32)
    outputs = {layer: rng.normal(size=(1, length, config.hidden_size)).astype(np.float32)
               for layer in feeding_layers(config)}
    mask = np.ones((1, length), bool)
    positions = np.arange(length)[None]
    side = SideNetwork(config)
    params = side.init(jax.random.key(0), embedded, outputs, mask, positions, 1.0, deterministic=True)
    run = jax.jit(lambda e, o: side.apply(params, e, o, mask, positions, 1.0, deterministic=True))
    order = np.array([3, 0, 5, 1, 4, 2])
    direct = np.asarray(run(embedded, outputs))[:, order]
    permuted = np.asarray(run(embedded[:, order], {k: v[:, order] for k, v in outputs.items()}))
    assert np.allclose(direct, permuted, atol=1e-5) is not sees_order


def _torch_l1_kept(importance_out_in, keep):
    """Torch-Pruning's L1Strategy on a `[out, in]` matrix: prune the `out − keep` rows of smallest L1 norm; the
    rows left, in order (`select_weights`)."""
    norms = np.abs(importance_out_in).sum(axis=1)
    pruned = set(np.argsort(norms, kind="stable")[: len(norms) - keep].tolist())
    return [row for row in range(len(norms)) if row not in pruned]


def _reference_fisher_side(config, backbone, importance):
    """The paper's `pruning_without_residual` (version 2) chain in its own layout (torch `[out, in]` weights), on
    rofjax names; GAU blocks rank u and v together (their channels multiply) and z alone."""
    side = side_config(config)
    W = lambda t: np.asarray(t, np.float64).T                               # noqa: E731
    keep = _torch_l1_kept(W(importance["embeddings"]["word_embeddings"]["embedding"]), side.hidden_size)
    blocks, post = [], config.norm_position == "post"

    def linear(w, imp, rows, cols_keep):
        """(pruned [out, in] weight as a flax kernel, kept rows) for weight `w` with inputs `cols_keep`."""
        kept = _torch_l1_kept(W(imp["kernel"])[:, cols_keep], rows)
        out = {"kernel": W(w["kernel"])[kept][:, cols_keep].T}
        if "bias" in w:
            out["bias"] = np.asarray(w["bias"], np.float64)[kept]
        return out, kept

    def norm(w, chans):
        return {k: np.asarray(v, np.float64)[chans] for k, v in w.items()}

    def add_norm(block, w, name, chans):                 # RoFormerV2's norms have no parameters
        if name in w:
            block[name] = norm(w[name], chans)

    def layer(tree, i):                                  # scanned layers are stacked
        if "layers" in tree:
            return jax.tree_util.tree_map(lambda x: np.asarray(x)[i], tree["layers"])
        return tree[f"layer_{i}"]

    for i in range(config.num_layers):
        w, imp, block = layer(backbone["transformer"], i), layer(importance["transformer"], i), {}
        if config.block_type == "attention":
            if not post:
                add_norm(block, w, "attention_norm", keep)
            a, ia = w["attention"], imp["attention"]
            product = np.prod([W(ia[n]["kernel"])[:, keep] for n in ("q_dense", "k_dense", "v_dense")], axis=0)
            qkv = _torch_l1_kept(product, side.num_heads * side.resolved_head_size)
            attention = {n: {"kernel": W(a[n]["kernel"])[qkv][:, keep].T} for n in ("q_dense", "k_dense", "v_dense")}
            for n in ("q_dense", "k_dense", "v_dense"):
                if "bias" in a[n]:
                    attention[n]["bias"] = np.asarray(a[n]["bias"], np.float64)[qkv]
            attention["o_dense"], keep = linear(a["o_dense"], ia["o_dense"], side.hidden_size, qkv)
            block["attention"] = attention
            add_norm(block, w, "attention_norm" if post else "feedforward_norm", keep)
            f, fi = w["feedforward"], imp["feedforward"]
            inner, inner_keep = linear(f["i_dense"], fi["i_dense"], side.intermediate_size, keep)
            outer, keep = linear(f["o_dense"], fi["o_dense"], side.hidden_size, inner_keep)
            block["feedforward"] = {"i_dense": inner, "o_dense": outer}
            if post:
                add_norm(block, w, "feedforward_norm", keep)
        else:
            e = config.intermediate_size
            g, ig = W(w["gau"]["i_dense"]["kernel"]), W(imp["gau"]["i_dense"]["kernel"])
            uv = _torch_l1_kept(ig[:e][:, keep] * ig[e:2 * e][:, keep], side.intermediate_size)
            z = _torch_l1_kept(ig[2 * e:][:, keep], side.resolved_key_size)
            rows = uv + [e + r for r in uv] + [2 * e + r for r in z]
            gau = {"i_dense": {"kernel": g[rows][:, keep].T},
                   "q_scaleoffset": norm(w["gau"]["q_scaleoffset"], z),
                   "k_scaleoffset": norm(w["gau"]["k_scaleoffset"], z)}
            gau["o_dense"], keep = linear(w["gau"]["o_dense"], imp["gau"]["o_dense"], side.hidden_size, uv)
            block["gau"] = gau
        blocks.append(block)
    out = {f"layer_{j}": blocks[layer] for j, layer in enumerate(feeding_layers(config))}
    if not post:
        out["final_norm"] = norm(backbone["transformer"]["final_norm"], keep)
    return out


@pytest.mark.parametrize("preset,overrides", [
    ("bert_tiny", dict(num_layers=3, side_layers=(0, 2), side_reduction=4)),
    ("bert_tiny", dict(norm_position="pre", side_reduction=2)),
    ("gau_alpha_tiny", dict(num_layers=3, side_layers=(1, 2), side_reduction=4)),
    ("roformer_v2_tiny", dict(scan_layers=True, side_reduction=4)),
])
def test_fisher_pruning_follows_the_papers_chain_and_fills_the_side_blocks(preset, overrides):
    """Side blocks from the paper's Fisher pruning (fisher-v2) equal a float64 reference of its chain, and have
    exactly the shapes the side network declares."""
    config = get_preset(preset, lst="gated", **overrides)
    shapes = nn.unbox(jax.eval_shape(Encoder(config).init, jax.random.key(0), IDS)["params"])
    backbone = {k: v for k, v in randomize(shapes, np.random.default_rng(0)).items() if k != "side"}
    # Squared gradients are positive and spread over orders of magnitude.
    importance = jax.tree_util.tree_map(lambda w: np.exp(np.random.default_rng(w.size).normal(0, 2, w.shape)),
                                        backbone)
    got = fisher_pruned_side(config, backbone, importance)
    want = _reference_fisher_side(config, backbone, importance)
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    jax.tree_util.tree_map(lambda g, w: np.testing.assert_array_equal(g, w), got, want)
    side_shapes = {k: v for k, v in shapes["side"].items() if k in got}
    assert jax.tree_util.tree_map(np.shape, got) == jax.tree_util.tree_map(np.shape, side_shapes)
    with pytest.raises(ValueError, match="lst='gated'"):
        fisher_pruned_side(config.replace(lst="su", side_layers=None, num_layers=4), backbone, importance)
