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
  Side weights are initialised at random with the backbone's initialiser: the paper's Fisher-pruning
  initialisation from the backbone is not implemented.
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


__all__ = ["SideNetwork", "feeding_layers", "fingerprint", "merge_backbone",
           "side_config", "side_layer_count", "split_backbone", "trainable_count"]
