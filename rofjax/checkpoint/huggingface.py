"""Hugging Face BERT and RoFormer checkpoints (`config.json` + `model.safetensors` or `pytorch_model.bin`) ↔ rofjax.

Covers transformers' `BertModel`/`BertForMaskedLM`/`BertForPreTraining` (prefix `bert.`), `RoFormerModel`/
`RoFormerForMaskedLM` (prefix `roformer.`), JunnYu's RoFormerV2 (same names, no biases or norm parameters) and
JunnYu's GAU-α (prefix `gau_alpha.`, `...gau.{i_dense,o_dense,q_scaleoffset,k_scaleoffset}`); a bare base model
saves its keys without the prefix. PyTorch `Linear.weight` is `(out, in)`: kernels are transposed both ways. Derived
buffers (RoFormer's rotary table `encoder.embed_positions.weight`, `embeddings.position_ids`/`token_type_ids`) and
BERT's next-sentence head (`cls.seq_relationship.*`, which rofjax has no use for) are skipped on import; a tied MLM
decoder must equal the word embeddings.

Stock transformers loads a `roformer_v2` config into its RoFormer classes with a warning only, re-initialising the
biases and norm gains RoFormerV2 lacks; `save_huggingface` therefore writes RoFormerV2 and GAU-α only for JunnYu's
`roformer` / `gau_alpha` packages, on request (`target="junnyu"`).

Reading `model.safetensors` and writing need only `safetensors`; `pytorch_model.bin` needs torch.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np

from rofjax.checkpoint.tree import CheckpointMismatchError, assemble, per_layer_flat, staged_folder
from rofjax.models.config import ModelConfig

_LAYER = re.compile(r"^transformer/layer_(\d+)/(.+)$")
_ATTENTION = {"q_dense": "attention.self.query", "k_dense": "attention.self.key", "v_dense": "attention.self.value",
              "o_dense": "attention.output.dense"}
_LEAF = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias", "embedding": "weight"}
_DERIVED = re.compile(r"(embed_positions\.weight|position_ids|embeddings\.token_type_ids|"
                      r"cls\.predictions\.decoder\.(weight|bias)|"
                      r"cls\.seq_relationship\.(weight|bias))$")   # BERT's next-sentence head: not used here
_PREFIXES = {"bert": "bert.", "gau_alpha": "gau_alpha."}
TARGETS = ("transformers", "junnyu")
JUNNYU_ONLY = ("roformer_v2", "gau_alpha")       # stock transformers would load these silently wrong (or not at all)


def model_prefix(config: ModelConfig) -> str:
    return _PREFIXES.get(config.family, "roformer.")


def huggingface_name(path: str, config: ModelConfig, prefix: str | None = None) -> str:
    """The state-dict key of our (per-layer) parameter `path`."""
    p = model_prefix(config) if prefix is None else prefix
    leaf = _LEAF[path.rsplit("/", 1)[1]]
    if path == "embeddings/word_embeddings/embedding":
        return p + "embeddings.word_embeddings.weight"
    if path == "embeddings/token_type_embeddings/embedding":
        return p + "embeddings.token_type_embeddings.weight"
    if path == "embeddings/position_embeddings/embedding":
        return p + "embeddings.position_embeddings.weight"
    if path.startswith("embeddings/norm/"):
        return p + "embeddings.LayerNorm." + leaf
    if path.startswith("embeddings/mapping/"):
        return p + "embeddings_project." + leaf
    if path.startswith("transformer/final_norm/"):
        return p + "encoder.final_norm." + leaf
    if path.startswith("pooler/"):
        return p + "pooler.dense." + leaf
    if path == "mlm/bias":
        return "cls.predictions.bias"
    if path.startswith("mlm/"):
        sub = path.split("/")[1]
        return {"dense": "cls.predictions.transform.dense.", "norm": "cls.predictions.transform.LayerNorm.",
                "output_mapping": "cls.predictions.output_mapping."}[sub] + leaf
    match = _LAYER.match(path)
    if not match:
        raise KeyError(f"No Hugging Face name for parameter {path}.")
    index, rest = match.groups()
    parts = rest.split("/")
    layer = f"{p}encoder.layer.{index}."
    if parts[0] == "gau":
        return layer + f"gau.{parts[1]}.{leaf}"
    if parts[0] == "attention":
        return layer + f"{_ATTENTION[parts[1]]}.{leaf}"
    if parts[0] == "attention_norm":
        return layer + f"attention.output.LayerNorm.{leaf}"
    if parts[0] == "feedforward":
        return layer + {"i_dense": "intermediate.dense.", "o_dense": "output.dense."}[parts[1]] + leaf
    if parts[0] == "feedforward_norm":
        return layer + f"output.LayerNorm.{leaf}"
    if parts[0] == "gau_norm":
        return layer + f"gau_norm.{leaf}"
    raise KeyError(f"No Hugging Face name for parameter {path}.")


def _is_kernel(path: str) -> bool:
    return path.endswith("/kernel")


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Tensors of `model.safetensors` or `pytorch_model.bin` (a file, or a folder holding one) as numpy."""
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in ("model.safetensors", "pytorch_model.bin"):
            if os.path.exists(os.path.join(path, name)):
                path = os.path.join(path, name)
                break
        else:
            raise FileNotFoundError(f"{path}: neither model.safetensors nor pytorch_model.bin is there.")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return dict(load_file(path))
    try:
        import torch
    except ImportError:
        raise ImportError(f"Reading {path} needs torch: pip install 'rofjax[convert]' (or convert it to "
                          f"model.safetensors).") from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.detach().to(torch.float32).numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}


def _check_tied(source: dict[str, np.ndarray], prefix: str, label: str) -> None:
    decoder = source.get("cls.predictions.decoder.weight")
    embeddings = source.get(prefix + "embeddings.word_embeddings.weight")
    if decoder is not None and embeddings is not None and decoder.shape == embeddings.shape:
        if not np.array_equal(decoder, embeddings):
            raise CheckpointMismatchError(f"{label}: cls.predictions.decoder.weight differs from "
                                          f"{prefix}embeddings.word_embeddings.weight; rofjax ties them.")
    bias, decoder_bias = source.get("cls.predictions.bias"), source.get("cls.predictions.decoder.bias")
    if bias is not None and decoder_bias is not None and not np.array_equal(bias, decoder_bias):
        raise CheckpointMismatchError(f"{label}: cls.predictions.decoder.bias differs from cls.predictions.bias.")


def convert_huggingface(state: dict[str, np.ndarray], config: ModelConfig, *, strict: bool = True,
                        source_label: str = "state dict"):
    """Map a state dict onto `config`'s parameter tree; returns `(params, report)`."""
    prefix = model_prefix(config)
    if not any(k.startswith(prefix) for k in state):
        prefix = ""                                      # a bare RoFormerModel saves its keys without a prefix
    _check_tied(state, prefix, source_label)
    return assemble(
        config, state, lambda path: huggingface_name(path, config, prefix),
        lambda path, value: value.T if _is_kernel(path) else value,
        skip=lambda name: bool(_DERIVED.search(name)), source_label=source_label, strict=strict,
    )


def load_huggingface(path: str | os.PathLike, *, strict: bool = True, scan_layers: bool = False,
                     return_report: bool = False):
    """`(config, params)` from a folder with `config.json` and `model.safetensors` or `pytorch_model.bin`."""
    path = os.fspath(path)
    config_file = os.path.join(path, "config.json") if os.path.isdir(path) else path
    if not os.path.exists(config_file):
        raise FileNotFoundError(f"{config_file} not found (load_huggingface needs the model folder).")
    with open(config_file, encoding="utf-8") as f:
        model_type = json.load(f).get("model_type")
    if model_type == "roberta":
        # fairseq-layout RoBERTa: prefix `roberta.`, `lm_head.*`, positions offset by pad_token_id + 1. Loading it as
        # BERT would shift every position; HFL's Chinese RoBERTa-wwm-ext is published as a BERT checkpoint instead.
        raise ValueError(f"{config_file}: model_type 'roberta' (fairseq RoBERTa layout, positions offset by "
                         f"pad_token_id + 1) is not supported; Chinese RoBERTa-wwm-ext checkpoints are BERT "
                         f"checkpoints (model_type 'bert').")
    config = ModelConfig.from_hf_config(config_file, scan_layers=scan_layers)
    weights = path if os.path.isdir(path) else os.path.dirname(path)
    state = read_state_dict(weights)
    params, report = convert_huggingface(state, config, strict=strict, source_label=str(weights))
    return (config, params, report) if return_report else (config, params)


def rotary_table(config: ModelConfig) -> np.ndarray:
    """transformers' `RoFormerSinusoidalPositionalEmbedding` weight (sin half, then cos half), computed as it does."""
    n_pos, dim = config.max_position_embeddings, config.hidden_size // config.num_heads
    position_enc = np.array([[pos / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for pos in range(n_pos)])
    sentinel = dim // 2 if dim % 2 == 0 else dim // 2 + 1
    out = np.empty((n_pos, dim), np.float32)
    out[:, :sentinel] = np.sin(position_enc[:, 0::2])
    out[:, sentinel:] = np.cos(position_enc[:, 1::2])
    return out


def to_huggingface(params, config: ModelConfig) -> dict[str, np.ndarray]:
    """Our parameters → state dict (kernels transposed to `(out, in)`), with the task-model prefix.

    A RoFormer v1 state dict also carries the rotary table transformers keeps as a weight, so that
    `RoFormerModel.from_pretrained` finds every key it expects (the table is skipped on import).
    """
    flat = per_layer_flat(params, config)
    state = {huggingface_name(path, config): np.ascontiguousarray(value.T if _is_kernel(path) else value)
             for path, value in flat.items()}
    if config.family == "roformer":
        state[model_prefix(config) + "encoder.embed_positions.weight"] = rotary_table(config)
    return state


def check_export_target(config: ModelConfig, target: str = "transformers", *, opt_in: str = "target='junnyu'",
                        alternative: str = "save_bert4keras") -> None:
    """Refuse a Hugging Face export that the library it is meant for would load wrong or not at all; `opt_in` and
    `alternative` name the caller's switches (keyword or command-line flag)."""
    if target not in TARGETS:
        raise ValueError(f"Unknown Hugging Face export target {target!r}; expected one of {TARGETS}.")
    if target == "transformers" and config.family in JUNNYU_ONLY:
        why = ("RoFormerModel would load it with the biases and norm gains RoFormerV2 lacks freshly initialised"
               if config.family == "roformer_v2" else "transformers has no GAU-α model")
        raise ValueError(f"a {config.family} export is not a stock transformers model ({why}): pass {opt_in} to "
                         f"write it for JunnYu's roformer / gau_alpha packages (model_type {config.family!r}), or "
                         f"export with {alternative}.")
    if target == "junnyu" and config.family == "bert":
        raise ValueError("JunnYu's packages have no BERT model; export a bert model for stock transformers "
                         "(target='transformers').")


def save_huggingface(params, config: ModelConfig, out_dir: str | os.PathLike, *, vocab_path=None,
                     extra_config: dict[str, Any] | None = None, target: str = "transformers") -> str:
    """Write `config.json` and `model.safetensors` (and `vocab.txt`) into `out_dir`, atomically; returns out_dir.

    `target="transformers"` (default): BERT and RoFormer v1, which transformers' `BertForMaskedLM` /
    `RoFormerForMaskedLM.from_pretrained(out_dir)` load with no missing key; RoFormerV2 and GAU-α are refused.
    `target="junnyu"`: RoFormer v1, RoFormerV2 and GAU-α for JunnYu's `roformer` and `gau_alpha` packages
    (`config.json` model_type "roformer", "roformer_v2" or "gau_alpha").
    """
    from safetensors.numpy import save_file

    check_export_target(config, target)
    state = to_huggingface(params, config)
    with staged_folder(out_dir, vocab_path) as staging:
        save_file(state, os.path.join(staging, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(staging, "config.json"), "w", encoding="utf-8") as f:
            json.dump({**config.to_hf_config(), **(extra_config or {})}, f, indent=2)
    return os.path.abspath(os.fspath(out_dir))


__all__ = ["check_export_target", "convert_huggingface", "huggingface_name", "load_huggingface", "read_state_dict",
           "rotary_table", "save_huggingface", "to_huggingface"]
