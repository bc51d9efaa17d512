"""bert4keras / Google-BERT TF1 checkpoints (`bert_model.ckpt` + `bert_config.json`) ↔ rofjax parameters.

Names follow bert4keras's `variable_mapping()` for `BERT`, `RoFormer`, `RoFormerV2` and `GAU_alpha` (kernels are
stored `(in, out)`, as our Dense kernels), which for BERT are Google's own names (`bert/embeddings/
position_embeddings`, `bert/pooler/dense/*`, `cls/predictions/*`); HFL's Chinese RoBERTa-wwm-ext checkpoints use
them too. Reading and writing need TensorFlow (`pip install 'rofjax[convert]'`).

GAU-α checkpoints written by a bert4keras whose GatedAttentionUnit created its weights in another order than the
mapping listed them (`i, o, q, k` in 0.11.3 against `i, q, k, o` later; GAU-alpha issue #494) carry tensors under
the wrong names. Their shapes tell which way they were paired, and `load_bert4keras` puts them back.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from rofjax.checkpoint.tree import (
    CheckpointMismatchError,
    ConversionReport,
    assemble,
    per_layer_flat,
    staged_folder,
)
from rofjax.models.config import FAMILIES, ModelConfig

OPTIMIZER_SLOT = re.compile(r"(adam_[mv]|/Adam|AdamWeightDecayOptimizer|global_step|beta[12]_power|"
                            r"good_steps|loss_scale|_slot_|/accum|/v$|/m$|iterations|learning_rate)")
# Google's pre-training checkpoints (and bert4keras's with_nsp=True) carry the next-sentence-prediction head
# `cls/seq_relationship/output_weights` and `output_bias`. rofjax has no NSP head, so the tensors are skipped, not
# reported as unused; they are not written back either.
NSP_HEAD = re.compile(r"^cls/seq_relationship/")
MODELS = FAMILIES + ("roberta",)      # bert4keras's `roberta` is a BERT checkpoint

_LAYER = re.compile(r"^transformer/layer_(\d+)/(.+)$")
_ATTENTION = {"q_dense": "attention/self/query", "k_dense": "attention/self/key",
              "v_dense": "attention/self/value", "o_dense": "attention/output/dense"}
_NORM_LEAF = {"gamma": "gamma", "beta": "beta"}


def bert4keras_name(path: str, config: ModelConfig) -> str:
    """The checkpoint variable name of our (per-layer) parameter `path`."""
    if path == "embeddings/word_embeddings/embedding":
        return "bert/embeddings/word_embeddings"
    if path == "embeddings/token_type_embeddings/embedding":
        return "bert/embeddings/token_type_embeddings"
    if path == "embeddings/position_embeddings/embedding":
        return "bert/embeddings/position_embeddings"
    if path.startswith("embeddings/norm/"):
        return "bert/embeddings/LayerNorm/" + path.rsplit("/", 1)[1]
    if path.startswith("embeddings/mapping/"):
        return "bert/encoder/embedding_hidden_mapping_in/" + path.rsplit("/", 1)[1]
    if path.startswith("transformer/final_norm/"):
        return "bert/encoder/final_norm/" + path.rsplit("/", 1)[1]
    if path.startswith("mlm/"):
        rest = path[len("mlm/"):]
        if rest == "bias":
            return "cls/predictions/output_bias"
        sub, leaf = rest.split("/")
        return {"dense": "cls/predictions/transform/dense/", "norm": "cls/predictions/transform/LayerNorm/",
                "output_mapping": "cls/predictions/output_mapping/"}[sub] + leaf
    if path.startswith("pooler/"):
        return "bert/pooler/dense/" + path.rsplit("/", 1)[1]
    match = _LAYER.match(path)
    if not match:
        raise KeyError(f"No bert4keras name for parameter {path}.")
    index, rest = match.groups()
    parts = rest.split("/")
    if config.block_type == "gau":
        scope = "GAU_alpha" if config.family == "gau_alpha" else "bert"
        if parts[0] == "gau":
            return f"{scope}/encoder/layer_{index}/gau/" + "/".join(parts[1:])
        return f"{scope}/encoder/layer_{index}/{parts[0]}/LayerNorm/{parts[-1]}"
    layer = f"bert/encoder/layer_{index}/"
    if parts[0] == "attention":
        return layer + _ATTENTION[parts[1]] + "/" + parts[2]
    if parts[0] == "attention_norm":
        return layer + "attention/output/LayerNorm/" + parts[1]
    if parts[0] == "feedforward":
        return layer + {"i_dense": "intermediate/dense/", "o_dense": "output/dense/"}[parts[1]] + parts[2]
    if parts[0] == "feedforward_norm":
        return layer + "output/LayerNorm/" + parts[1]
    raise KeyError(f"No bert4keras name for parameter {path}.")


def _tensorflow():
    try:
        import tensorflow as tf
    except ImportError:
        raise ImportError("Reading or writing bert4keras TF checkpoints needs TensorFlow: "
                          "pip install 'rofjax[convert]' (tensorflow-cpu).") from None
    return tf


def read_tf_checkpoint(checkpoint_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every variable of a TF checkpoint (a prefix such as `.../bert_model.ckpt`, or its folder)."""
    tf = _tensorflow()
    path = str(checkpoint_path)
    if os.path.isdir(path):
        found = tf.train.latest_checkpoint(path)
        if found is None:
            candidates = [f[: -len(".index")] for f in os.listdir(path) if f.endswith(".index")]
            if len(candidates) != 1:
                raise FileNotFoundError(f"{path}: no TF checkpoint (.index file) found" if not candidates else
                                        f"{path}: several checkpoints {sorted(candidates)}; pass one prefix.")
            found = os.path.join(path, candidates[0])
        path = found
    if not os.path.exists(path + ".index"):
        raise FileNotFoundError(f"TF checkpoint not found: {path}.index does not exist.")
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in sorted(reader.get_variable_to_shape_map())}


def _repair_gau_order(source: dict[str, np.ndarray], config: ModelConfig, report: ConversionReport):
    """Undo a GAU-α checkpoint whose four per-layer tensors were paired with names in the other order."""
    if config.block_type != "gau":
        return source
    source = dict(source)
    for index in range(config.num_layers):
        name = {leaf: bert4keras_name(f"transformer/layer_{index}/gau/{leaf}", config)
                for leaf in ("i_dense/kernel", "q_scaleoffset/gamma", "k_scaleoffset/gamma", "o_dense/kernel")}
        if not all(n in source for n in name.values()):
            continue
        q, k, o = (source[name[leaf]] for leaf in ("q_scaleoffset/gamma", "k_scaleoffset/gamma", "o_dense/kernel"))
        if np.ndim(o) == 2:
            continue
        if np.ndim(q) == 2:      # names i, q, k, o written over weights created as i, o, q, k
            fixed = {"o_dense/kernel": q, "q_scaleoffset/gamma": k, "k_scaleoffset/gamma": o}
            order = "i,o,q,k weights under i,q,k,o names"
        elif np.ndim(k) == 2:    # names i, o, q, k written over weights created as i, q, k, o
            fixed = {"o_dense/kernel": k, "q_scaleoffset/gamma": o, "k_scaleoffset/gamma": q}
            order = "i,q,k,o weights under i,o,q,k names"
        else:
            continue
        for leaf, value in fixed.items():
            source[name[leaf]] = value
        report.notes.append(f"layer {index}: repaired GAU sub-layer order ({order})")
    return source


def convert_bert4keras(variables: Mapping[str, Any], config: ModelConfig, *, strict: bool = True,
                       source_label: str = "checkpoint"):
    """Map checkpoint variables (name → array) onto `config`'s parameter tree; returns `(params, report)`."""
    report = ConversionReport()
    source = _repair_gau_order(dict(variables), config, report)
    params, report = assemble(
        config, source, lambda path: bert4keras_name(path, config), lambda path, value: value,
        skip=lambda name: bool(OPTIMIZER_SLOT.search(name) or NSP_HEAD.search(name)), source_label=source_label,
        strict=strict,
        report=report,
    )
    return params, report


def load_bert4keras(checkpoint_path, config_path, model: str, *, strict: bool = True, scan_layers: bool = False,
                    return_report: bool = False):
    """`(config, params)` from a bert4keras checkpoint and its `bert_config.json`.

    `model` is `"bert"` (or its alias `"roberta"`), `"roformer"`, `"roformer_v2"` or `"gau_alpha"`. With `strict`,
    a checkpoint tensor the model does not use is an error (it usually means the wrong `model`); optimizer slots and
    BERT's next-sentence head are skipped either way.
    """
    if model not in MODELS:
        raise ValueError(f"Unknown model {model!r} for a bert4keras checkpoint; expected one of {MODELS}.")
    config = ModelConfig.from_bert_config(config_path, model, scan_layers=scan_layers)
    variables = read_tf_checkpoint(checkpoint_path)
    params, report = convert_bert4keras(variables, config, strict=strict, source_label=str(checkpoint_path))
    return (config, params, report) if return_report else (config, params)


def to_bert4keras(params, config: ModelConfig) -> dict[str, np.ndarray]:
    """Our parameters (scanned or not) → checkpoint variable name → array."""
    return {bert4keras_name(path, config): value for path, value in per_layer_flat(params, config).items()}


def save_bert4keras(params, config: ModelConfig, out_dir: str | os.PathLike, *, vocab_path=None) -> str:
    """Write `bert_model.ckpt.*` and `bert_config.json` (and `vocab.txt`) into `out_dir`; returns the prefix.

    Files are written to a temporary folder beside `out_dir` and moved into place at the end, so an interrupted
    export leaves no partial checkpoint.
    """
    tf = _tensorflow()
    variables = to_bert4keras(params, config)
    with staged_folder(out_dir, vocab_path) as staging:
        prefix = os.path.join(staging, "bert_model.ckpt")
        names = sorted(variables)
        tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                          tensors=[tf.constant(variables[n]) for n in names])
        with open(os.path.join(staging, "checkpoint"), "w", encoding="utf-8") as f:
            f.write('model_checkpoint_path: "bert_model.ckpt"\nall_model_checkpoint_paths: "bert_model.ckpt"\n')
        with open(os.path.join(staging, "bert_config.json"), "w", encoding="utf-8") as f:
            json.dump(config.to_bert_config(), f, indent=2)
    return os.path.join(os.path.abspath(os.fspath(out_dir)), "bert_model.ckpt")


__all__ = [
    "CheckpointMismatchError",
    "bert4keras_name",
    "convert_bert4keras",
    "load_bert4keras",
    "read_tf_checkpoint",
    "save_bert4keras",
    "to_bert4keras",
]
