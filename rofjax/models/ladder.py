"""Ladder Side-Tuning (kexue.fm 9138; Sung, Cho and Bansal, arXiv 2206.06522): a small side network fed by a frozen
backbone's hidden states. Every trainable parameter lives in the side network (and the task head), and the
backbone's outputs enter it under `stop_gradient`, so no gradient ever reaches the backbone: it runs forward only,
keeps no activations for a backward pass, and its parameters get no gradients and no optimizer state (the
`Trainer` holds them apart, in `TrainState.frozen`, and run folders do not store them).

Two designs, chosen by `ModelConfig.lst` (the encoder's other fields describe the backbone):

* `su` — bojone/LST-CLUE (`LST_BERT`, seeds-spec §8.3): `side_num_layers` (4) post-LN BERT blocks, 128 wide, 4 heads,
  FFN 512. Side input `Dense(128, no bias)` of the backbone's embeddings (after their norm and dropout), which
  carry a BERT backbone's absolute positions; on a RoPE backbone the side blocks rotate q and k as it does. After
  side block i, `+ Dense(128, no bias)` of backbone layer `(i+1)·skip − 1`, `skip = layers // side layers`
  (layers 2, 5, 8, 11 of a 12-layer backbone). Side blocks take the depth-scaled initialiser of RoFormerV2 with
  L = side layers (σ = 1.13684723/√fan · L^−1/2), ladder projections Glorot uniform.
  Output: the last side block's hidden states (128 wide).
* `gated` — the paper (`modeling_side_t5.py`, §8.4): side blocks are the backbone's own architecture with widths
  divided by `side_reduction` r (hidden, FFN and per-head sizes; same heads), one per backbone layer in
  `side_layers` (all by default; fewer is the paper's layer dropping). Side input `Dense(d/r)` (with bias) of the
  embeddings; before side block j, fed by backbone layer l_j:
  `h ← μ_j·h + (1 − μ_j)·Dense_j(backbone_l_j)`, `μ_j = sigmoid(α_j / T)`, α_j = 0 (μ = ½), T =
  `side_gate_temperature` (0.1). Then the backbone's norm type, dropout and `Dense(d)` back to the backbone's width.
  Side weights are initialised at random with the backbone's initialiser, or (`config.lst_init="fisher"`) by
  the paper's Fisher pruning of the backbone (`fisher_pruned_side`, below).

Fisher pruning (the paper's `fisher-v2` initialisation, `seq2seq/pruning/pruning_methods.py` `pruning_v2` of
ylsung/Ladder-Side-Tuning, on T5): each weight's importance is its empirical Fisher information, the squared
gradient of the task loss summed over single training examples (`rofjax.training.fisher`). The pruning walks the
backbone's weight matrices in forward order as a chain: a matrix's input channels are the ones its predecessor
kept; its output channels are ranked by the L1 norm of its importance over those inputs (q, k and v — or GAU's u
and v — ranked together by the elementwise product of their importances) and the lowest are dropped; biases and
norm parameters follow the channels of the tensor they act on. The first hidden channels are those of the word
embeddings with the largest summed importance. Side block j gets the pruned weights of the backbone layer that
feeds it. As in the paper the chain ignores the residual connections (a block's output channels need not be its
input's), the projections into the side network stay random, and a pre-norm backbone's final norm initialises
the side network's. Where a width does not divide by r the side keeps `width // r` channels (the paper rounds
the pruned count instead).
"""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from rofjax.models.config import ModelConfig, family_config

SIDE = "side"            # the side network's parameters, under the encoder's
ENCODER = "encoder"      # the task models' encoder


def side_layer_count(config: ModelConfig) -> int:
    if config.lst == "su":
        return config.side_num_layers or 4
    return len(feeding_layers(config))


def feeding_layers(config: ModelConfig) -> tuple[int, ...]:
    """The backbone layers (0-based) whose outputs feed the side network, in side-block order."""
    if config.lst == "su":
        side = config.side_num_layers or 4
        skip = config.num_layers // side
        return tuple((i + 1) * skip - 1 for i in range(side))
    if config.lst == "gated":
        return tuple(config.side_layers) if config.side_layers is not None else tuple(range(config.num_layers))
    return ()


def side_config(config: ModelConfig) -> ModelConfig:
    """The configuration of the side network's blocks."""
    if config.lst == "su":
        layers = side_layer_count(config)
        # Su's side blocks see positions through their input, the BERT backbone's embeddings (which hold the
        # absolute position table). A RoPE backbone's embeddings hold none: its side blocks rotate q and k as the
        # backbone does, or their attention would not see token order at all.
        positions = dict(position_embedding=config.position_embedding, rope_base=config.rope_base,
                         rope_layout=config.rope_layout, rope_scaling=config.rope_scaling,
                         rope_scaling_factor=config.rope_scaling_factor)
        return family_config(
            "bert", vocab_size=config.vocab_size, hidden_size=config.side_hidden_size or 128, num_layers=layers,
            num_heads=config.side_num_heads or 4, intermediate_size=config.side_intermediate_size or 512,
            hidden_act=config.hidden_act, dropout_rate=config.dropout_rate,
            attention_dropout_rate=config.attention_dropout_rate, norm_epsilon=config.norm_epsilon,
            initializer="depth_scaled", initializer_order=2, dtype=config.dtype, param_dtype=config.param_dtype,
            attention_implementation=config.attention_implementation, **positions)
    if config.lst == "gated":
        r = config.side_reduction
        hidden = config.side_hidden_size or max(1, config.hidden_size // r)
        heads = config.side_num_heads or config.num_heads
        sizes = dict(hidden_size=hidden, num_heads=heads,
                     intermediate_size=config.side_intermediate_size or max(1, config.intermediate_size // r))
        if config.block_type == "attention":
            sizes["head_size"] = max(1, config.resolved_head_size // r)
            sizes["key_size"] = max(1, config.resolved_key_size // r) if config.key_size else None
        else:
            sizes["key_size"] = max(2, config.resolved_key_size // r)
        return config.replace(lst="none", num_layers=side_layer_count(config), embedding_size=None,
                              side_num_layers=None, side_hidden_size=None, side_num_heads=None,
                              side_intermediate_size=None, side_layers=None, scan_layers=False, **sizes)
    raise ValueError("side_config: this model has no side network (lst='none').")


class SideNetwork(nn.Module):
    """`(embedded, {backbone layer: hidden states}, mask, positions, alpha) →` the side network's output."""

    config: ModelConfig          # the backbone's config, with `lst` set

    @nn.compact
    def __call__(self, embedded, backbone_outputs: dict, mask, positions, alpha, *, deterministic: bool,
                 doc_ids=None):
        from rofjax.models.encoder import EncoderLayer, dtypes, make_norm
        from rofjax.models.initializers import kernel_initializer
        from rofjax.nn.dense import dense
        from rofjax.nn.dropout import Dropout

        cfg, side = self.config, side_config(self.config)
        width = side.hidden_size
        feeds = feeding_layers(cfg)
        common = dtypes(side)
        if cfg.lst == "su":
            ladder = dict(use_bias=False, kernel_init=nn.initializers.glorot_uniform(), **common)
            x = dense(width, ("embed", "mlp"), name="embedding_projection", **ladder)(embedded)
            for i, layer in enumerate(feeds):
                x, _ = EncoderLayer(side, deterministic=deterministic, name=f"layer_{i}")(x, mask, positions, alpha,
                                                                                          doc_ids)
                x = x + dense(width, ("embed", "mlp"), name=f"ladder_{i}", **ladder)(backbone_outputs[layer])
            return x
        projection = dict(use_bias=True, kernel_init=kernel_initializer(cfg), **common)
        x = dense(width, ("embed", "mlp"), name="embedding_projection", **projection)(embedded)
        for j, layer in enumerate(feeds):
            gate = self.param(f"gate_{j}", nn.initializers.zeros, (), jnp.float32)
            mu = jax.nn.sigmoid(gate / cfg.side_gate_temperature).astype(x.dtype)
            fed = dense(width, ("embed", "mlp"), name=f"ladder_{j}", **projection)(backbone_outputs[layer])
            x = mu * x + (1 - mu) * fed
            x, _ = EncoderLayer(side, deterministic=deterministic, name=f"layer_{j}")(x, mask, positions, alpha,
                                                                                      doc_ids)
        x = make_norm(side, "final_norm")(x)
        x = Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
        return dense(cfg.hidden_size, ("mlp", "embed"), name="up_projection", **projection)(x)


# Fisher-pruning initialisation of a gated side network ------------------------------------------------------------

def _kept_outputs(importance: np.ndarray, keep: int) -> np.ndarray:
    """The output channels (last axis) a `[inputs, outputs]` importance keeps: all but the `outputs − keep` with the
    smallest L1 norm over the inputs, in ascending order (Torch-Pruning's `L1Strategy`)."""
    norms = np.abs(np.asarray(importance, np.float64)).sum(axis=0)
    dropped = np.argsort(norms, kind="stable")[: norms.shape[0] - keep]
    return np.setdiff1d(np.arange(norms.shape[0]), dropped)


def fisher_pruned_side(config: ModelConfig, backbone: dict, importance: dict) -> dict:
    """The parameters of a `gated` side network's blocks (and, on a pre-norm backbone, its final norm) pruned
    from the backbone: `{"layer_j": {...}, ["final_norm": {...}]}`, shaped as `SideNetwork` has them.

    `backbone` and `importance` are the encoder's parameter subtree (`embeddings`, `transformer`) and a tree of
    the same shapes holding each weight's Fisher information. The chain is described in the module docstring."""
    if config.lst != "gated":
        raise ValueError(f"fisher_pruned_side: Fisher pruning initialises lst='gated' side networks; this model has "
                         f"lst={config.lst!r}.")
    from rofjax.checkpoint.tree import is_scanned, unstack_layers

    side = side_config(config)

    def as_layers(tree):
        tree = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), tree)
        return unstack_layers(tree, config.num_layers) if is_scanned(tree) else tree

    weights, scores = as_layers(backbone), as_layers(importance)

    def select(tensor, rows=None, columns=None):
        out = tensor if rows is None else tensor[rows]
        return out if columns is None else out[..., columns]

    table = scores["embeddings"]["word_embeddings"]["embedding"]
    embed_size = table.shape[1]
    current = _kept_outputs(table, embed_size // config.side_reduction if "mapping" in weights["embeddings"]
                            else side.hidden_size)
    if "mapping" in weights["embeddings"]:
        current = _kept_outputs(scores["embeddings"]["mapping"]["kernel"][current], side.hidden_size)

    def dense(w, s, keep_outputs):
        """Prune one dense layer's inputs to `current`, choose its outputs; returns (params, kept outputs)."""
        kept = _kept_outputs(select(s["kernel"], current), keep_outputs)
        return dense_with(w, kept), kept

    def dense_with(w, kept):
        out = {"kernel": select(w["kernel"], current, kept)}
        if "bias" in w:
            out["bias"] = w["bias"][kept]
        return out

    def norm(w):
        return {name: value[current] for name, value in w.items()}

    pruned: dict[int, dict] = {}
    for index in range(config.num_layers):
        w, s = weights["transformer"][f"layer_{index}"], scores["transformer"][f"layer_{index}"]
        block: dict = {}
        post = config.norm_position != "pre"
        if config.block_type == "attention":
            if not post and "attention_norm" in w:
                block["attention_norm"] = norm(w["attention_norm"])
            wa, sa = w["attention"], s["attention"]
            query_width = side.num_heads * side.resolved_key_size
            value_width = side.num_heads * side.resolved_head_size
            if sa["q_dense"]["kernel"].shape[-1] == sa["v_dense"]["kernel"].shape[-1]:
                groups = [(("q_dense", "k_dense", "v_dense"), query_width)]
            else:                                  # keys and values of different widths: ranked apart
                groups = [(("q_dense", "k_dense"), query_width), (("v_dense",), value_width)]
            attention = {}
            for names, width in groups:
                product = np.prod([select(sa[name]["kernel"], current) for name in names], axis=0)
                kept = _kept_outputs(product, width)
                for name in names:
                    attention[name] = dense_with(wa[name], kept)
                values = kept                      # the output projection reads the value channels
            current = values
            attention["o_dense"], current = dense(wa["o_dense"], sa["o_dense"], side.hidden_size)
            block["attention"] = attention
            if post and "attention_norm" in w:
                block["attention_norm"] = norm(w["attention_norm"])
            if not post and "feedforward_norm" in w:
                block["feedforward_norm"] = norm(w["feedforward_norm"])
            wf, sf = w["feedforward"], s["feedforward"]
            inner, current = dense(wf["i_dense"], sf["i_dense"], side.intermediate_size)
            outer, current = dense(wf["o_dense"], sf["o_dense"], side.hidden_size)
            block["feedforward"] = {"i_dense": inner, "o_dense": outer}
            if post and "feedforward_norm" in w:
                block["feedforward_norm"] = norm(w["feedforward_norm"])
        else:
            if not post and "gau_norm" in w:
                block["gau_norm"] = norm(w["gau_norm"])
            wg, sg = w["gau"], s["gau"]
            e, e_side, s_side = config.intermediate_size, side.intermediate_size, side.resolved_key_size
            kernel = select(sg["i_dense"]["kernel"], current)
            kept_uv = _kept_outputs(kernel[:, :e] * kernel[:, e:2 * e], e_side)
            kept_z = _kept_outputs(kernel[:, 2 * e:], s_side)
            columns = np.concatenate([kept_uv, e + kept_uv, 2 * e + kept_z])
            gau = {"i_dense": dense_with(wg["i_dense"], columns)}
            for name, value in wg.items():
                if name.endswith("scaleoffset"):
                    gau[name] = {k: v[kept_z] for k, v in value.items()}
            current = kept_uv
            gau["o_dense"], current = dense(wg["o_dense"], sg["o_dense"], side.hidden_size)
            block["gau"] = gau
            if post and "gau_norm" in w:
                block["gau_norm"] = norm(w["gau_norm"])
        pruned[index] = block
    out = {f"layer_{j}": pruned[layer] for j, layer in enumerate(feeding_layers(config))}
    if config.norm_position == "pre" and "final_norm" in weights["transformer"]:
        out["final_norm"] = norm(weights["transformer"]["final_norm"])
    return out


# The trainable / frozen split of a task model's parameters ---------------------------------------------------------

def _split(tree):
    trainable, frozen = {}, {}
    for key, value in tree.items():
        if key == ENCODER and isinstance(value, dict):
            kept = {k: v for k, v in value.items() if k == SIDE}
            held = {k: v for k, v in value.items() if k != SIDE}
        elif isinstance(value, dict):
            kept, held = _split(value)
        else:
            kept, held = value, None
        if kept is not None and not (isinstance(kept, dict) and not kept):
            trainable[key] = kept
        if held:
            frozen[key] = held
    return trainable, frozen


def split_backbone(params, config: ModelConfig) -> tuple[dict, dict | None]:
    """`(trainable, frozen)`: with LST, the encoder's backbone parameters go to `frozen` (the side network and
    heads stay trainable); without, `(params, None)`. Works on any tree shaped like the parameters (shardings,
    shape structs)."""
    if config.lst == "none":
        return params, None
    return _split(params)


def merge_backbone(trainable, frozen):
    """The full parameter tree from `split_backbone`'s halves."""
    if frozen is None:
        return trainable
    merged = dict(trainable)
    for key, value in frozen.items():
        merged[key] = merge_backbone(trainable[key], value) if key in trainable else value
    return merged


def fingerprint(tree) -> str:
    """A digest of every array of `tree` (names, shapes, dtypes and bytes): the identity of a backbone."""
    digest = hashlib.blake2b(digest_size=16)
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    for path, leaf in sorted(flat, key=lambda item: jax.tree_util.keystr(item[0])):
        array = np.asarray(jax.device_get(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}:{array.shape}:{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def trainable_count(params, config: ModelConfig) -> int:
    """Number of trainable parameters (LST: side network and heads)."""
    trainable, _ = split_backbone(params, config)
    return int(sum(np.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(trainable)))


__all__ = ["SideNetwork", "feeding_layers", "fingerprint", "fisher_pruned_side", "merge_backbone",
           "side_config", "side_layer_count", "split_backbone", "trainable_count"]
