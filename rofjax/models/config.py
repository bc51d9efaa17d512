"""`ModelConfig`: one frozen dataclass that describes every encoder variant, and the published presets.

BERT/RoBERTa, RoFormer (v1), RoFormerV2 and GAU-α are configurations of one `Encoder`, not four models:

| family      | block     | positions | norm              | bias | act   | attention     | MLM head           | init        |
|-------------|-----------|-----------|-------------------|------|-------|---------------|--------------------|-------------|
| bert        | attention | learned   | LayerNorm, post   | yes  | gelu  | softmax       | dense+LN+tied+bias | trunc 0.02  |
| roformer    | attention | RoPE      | LayerNorm, post   | yes  | gelu  | softmax       | dense+LN+tied+bias | trunc 0.02  |
| roformer_v2 | attention | RoPE      | RMSNorm (no gain) | no   | relu  | softmax       | tied, no bias      | depth, 2    |
| gau_alpha   | gau       | RoPE      | RMSNorm (no gain) | no   | swish | softmax_plus  | tied, no bias      | depth, 3    |

(`gelu` is the erf form, as Google BERT and bert4keras compute it.) Chinese RoBERTa-wwm-ext is a BERT checkpoint.

`lst` adds a Ladder Side-Tuning side network to any of them (`rofjax.models.ladder`): the encoder then returns the
side network's output and its backbone is frozen.

The config reads and writes bert4keras's `bert_config.json` and Hugging Face's `config.json` (BERT, RoFormer,
JunnYu's RoFormerV2 and GAU-α ports).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Literal

from rofjax.nn.activations import ACTIVATIONS
from rofjax.nn.attention import ATTENTION_IMPLEMENTATIONS, NORMALIZATIONS
from rofjax.nn.embedding import LOOKUPS
from rofjax.nn.rope import LAYOUTS, SCALINGS, RopeOptions

FAMILIES: tuple[str, ...] = ("bert", "roformer", "roformer_v2", "gau_alpha")
POSITION_EMBEDDINGS = ("rope", "absolute")
LST_DESIGNS = ("none", "su", "gated")
BLOCK_TYPES = ("attention", "gau")
NORM_TYPES = ("layernorm", "rmsnorm")
NORM_POSITIONS = ("post", "pre")
RESIDUAL_MODES = ("plain", "alpha", "deepnorm")
INITIALIZERS = ("bert", "depth_scaled", "xavier")
MLM_HEADS = ("transform", "tied")
REMAT_POLICIES = ("none", "full", "dots", "dots_with_no_batch_dims")
DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Every field of an encoder. Defaults are RoFormer v1 base (char)."""

    family: str = "roformer"
    vocab_size: int = 12000
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    head_size: int | None = None            # per-head value size; None → hidden_size // num_heads
    key_size: int | None = None             # q/k size (RoPE dim); None → head_size (attention) or 128 (GAU)
    embedding_size: int | None = None       # None → hidden_size; otherwise a mapping Dense follows the embeddings
    type_vocab_size: int = 2
    max_position_embeddings: int = 512      # written back to config files; RoPE itself has no length cap
    pad_token_id: int = 0

    block_type: Literal["attention", "gau"] = "attention"
    hidden_act: str = "gelu"
    use_bias: bool = True
    norm_type: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_position: Literal["post", "pre"] = "post"
    norm_epsilon: float = 1e-12
    dropout_before_embedding_norm: bool = False   # RoFormerV2/GAU-α: emb → dropout → norm; v1: emb → norm → dropout
    attention_normalization: str = "softmax"
    softmax_plus_min_length: int | None = None
    attention_scale: bool = True
    # RoPE of every attention, GAU and GlobalPointer layer; the defaults are what bert4keras and Hugging Face use.
    rope_base: float = 10000.0
    rope_layout: str = "interleaved"        # interleaved (pairs 2i, 2i+1) | half (pairs i, i + d/2, GPT-NeoX)
    rope_scaling: str = "none"              # none | linear (positions / factor) | ntk (base · factor^(d/(d−2)))
    rope_scaling_factor: float = 1.0
    rotary_value: bool = False
    position_embedding: str = "rope"        # rope | absolute (BERT: a learned table of max_position_embeddings rows)
    gau_chunk_size: int | None = None       # FLASH mixed-chunk attention for GAU blocks

    residual_mode: Literal["plain", "alpha", "deepnorm"] = "plain"
    deepnorm_alpha: float = 1.0             # residual_mode="deepnorm": Norm(α·x + F(x))

    initializer: Literal["bert", "depth_scaled", "xavier"] = "bert"
    initializer_range: float = 0.02
    initializer_order: int = 2

    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    mlm_head: Literal["transform", "tied"] = "transform"

    # Ladder Side-Tuning (kexue.fm 9138; `rofjax.models.ladder`). None sizes take the design's defaults: `su`
    # 4 layers × 128 wide, 4 heads, FFN 512, fed by every (layers/4)-th backbone layer; `gated` the backbone's
    # architecture with widths / side_reduction, one side block per backbone layer in `side_layers` (all by default).
    lst: str = "none"                       # none | su | gated
    side_num_layers: int | None = None
    side_hidden_size: int | None = None
    side_num_heads: int | None = None
    side_intermediate_size: int | None = None
    side_reduction: int = 8
    side_layers: tuple[int, ...] | None = None   # gated: backbone layers that feed a side block (layer dropping)
    side_gate_temperature: float = 0.1

    dtype: str = "float32"
    param_dtype: str = "float32"
    scan_layers: bool = False
    remat_policy: str = "none"
    # Accelerator paths; each computes the same function as the reference path (tests compare them).
    attention_implementation: str = "auto"  # auto | xla | cudnn: flash attention on GPU for bf16/fp16 softmax
    fused_attention_dropout: bool = False   # attention dropout inside the cuDNN kernel (its own random masks)
    embedding_lookup: str = "auto"          # auto | gather | one_hot: how the embedding gradient is formed

    def __post_init__(self):
        if self.side_layers is not None and not isinstance(self.side_layers, tuple):
            object.__setattr__(self, "side_layers", tuple(int(i) for i in self.side_layers))   # from JSON lists
        problems = []

        def check(name, allowed):
            value = getattr(self, name)
            if value not in allowed:
                problems.append(f"{name}={value!r} (expected one of {allowed})")

        check("family", FAMILIES)
        check("block_type", BLOCK_TYPES)
        check("norm_type", NORM_TYPES)
        check("norm_position", NORM_POSITIONS)
        check("residual_mode", RESIDUAL_MODES)
        check("initializer", INITIALIZERS)
        check("mlm_head", MLM_HEADS)
        check("remat_policy", REMAT_POLICIES)
        check("dtype", DTYPES)
        check("param_dtype", DTYPES)
        check("attention_implementation", ATTENTION_IMPLEMENTATIONS)
        check("embedding_lookup", LOOKUPS)
        check("hidden_act", tuple(sorted(ACTIVATIONS)))
        check("attention_normalization", NORMALIZATIONS)
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)} (must be > 0)")
        if self.block_type == "attention" and self.head_size is None and self.hidden_size % self.num_heads:
            problems.append(f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}; "
                            f"set head_size")
        if self.residual_mode == "deepnorm" and self.norm_position != "post":
            problems.append("residual_mode='deepnorm' needs norm_position='post'")
        check("position_embedding", POSITION_EMBEDDINGS)
        check("lst", LST_DESIGNS)
        if self.position_embedding == "absolute" and self.block_type == "gau":
            problems.append("position_embedding='absolute' is for attention blocks; GAU blocks use RoPE")
        if self.lst != "none":
            if self.side_reduction < 1:
                problems.append(f"side_reduction={self.side_reduction} (must be ≥ 1)")
            if self.side_layers is not None and not self.side_layers:
                problems.append("side_layers=() leaves the side network without inputs")
            bad = [i for i in self.side_layers or () if not 0 <= i < self.num_layers]
            if bad:
                problems.append(f"side_layers {bad} are not layers of a {self.num_layers}-layer backbone")
            if self.lst == "su" and self.side_layers is not None:
                problems.append("side_layers is for lst='gated'; lst='su' feeds every (layers / side layers)-th "
                                "backbone layer")
            if self.lst == "su" and self.num_layers < (self.side_num_layers or 4):
                problems.append(f"lst='su' needs at least side_num_layers={self.side_num_layers or 4} backbone "
                                f"layers; the backbone has {self.num_layers}")
        check("rope_layout", LAYOUTS)
        check("rope_scaling", SCALINGS)
        if self.rope_scaling_factor <= 0:
            problems.append(f"rope_scaling_factor={self.rope_scaling_factor} (must be > 0)")
        if self.rope_base <= 1:
            problems.append(f"rope_base={self.rope_base} (must be > 1)")
        if problems:
            raise ValueError("Invalid ModelConfig: " + "; ".join(problems) + ".")

    # Derived sizes -------------------------------------------------------------------------------------------
    @property
    def resolved_head_size(self) -> int:
        return self.head_size or self.hidden_size // self.num_heads

    @property
    def resolved_key_size(self) -> int:
        if self.key_size:
            return self.key_size
        return 128 if self.block_type == "gau" else self.resolved_head_size

    @property
    def resolved_embedding_size(self) -> int:
        return self.embedding_size or self.hidden_size

    @property
    def rope(self) -> RopeOptions:
        return RopeOptions(base=self.rope_base, layout=self.rope_layout, scaling=self.rope_scaling,
                           scaling_factor=self.rope_scaling_factor)

    def replace(self, **changes) -> ModelConfig:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise KeyError(f"ModelConfig has no field(s) {unknown}; fields are {field_names()}.")
        return dataclasses.replace(self, **changes)

    # Serialisation -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> ModelConfig:
        unknown = sorted(set(values) - set(field_names()))
        if unknown:
            raise KeyError(f"{source}: unknown ModelConfig field(s) {unknown}; fields are {field_names()}.")
        return cls(**values)

    def to_json(self, path: str | os.PathLike) -> None:
        _write_json(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> ModelConfig:
        return cls.from_dict(_read_json(path), source=str(path))

    def _shared_file_keys(self, file: str) -> dict[str, Any]:
        if self.lst != "none":
            raise ValueError(f"{file} describes the backbone only; this config has a Ladder Side-Tuning side network "
                             f"(lst={self.lst!r}). Export the backbone's config (config.replace(lst='none')).")
        if self.rope != RopeOptions() and self.position_embedding == "rope":
            # Neither file has a key for them: the model read back would rotate with the defaults.
            raise ValueError(f"{file} cannot hold RoPE options other than the defaults {RopeOptions()}; this config "
                             f"has {self.rope}.")
        return {key: getattr(self, field) for key, field in _FILE_KEYS}

    def to_bert_config(self) -> dict[str, Any]:
        """bert4keras `bert_config.json` (the keys `build_transformer_model` reads)."""
        out = self._shared_file_keys("bert_config.json")
        if self.embedding_size is not None:
            out["embedding_size"] = self.embedding_size
        if self.head_size is not None:
            out["attention_head_size"] = self.head_size
        if self.key_size is not None or self.block_type == "gau":
            out["attention_key_size"] = self.resolved_key_size
        return out

    @classmethod
    def from_bert_config(cls, config: dict[str, Any] | str | os.PathLike, family: str, **overrides) -> ModelConfig:
        """Read a bert4keras `bert_config.json` (a dict or a path) for `family` ∈ bert, roformer, roformer_v2,
        gau_alpha (bert4keras's `roberta` is `bert`)."""
        source = "bert_config"
        family = "bert" if family == "roberta" else family
        if not isinstance(config, dict):
            source = str(config)
            config = _read_json(config)
        if family not in FAMILIES:
            raise ValueError(f"Unknown model family {family!r}; expected one of {FAMILIES}.")
        missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size")
                   if k not in config]
        if missing:
            raise KeyError(f"{source}: missing key(s) {missing}.")
        values = dict(_read_shared_file_keys(config), head_size=config.get("attention_head_size"),
                      key_size=config.get("attention_key_size"))
        if values["embedding_size"] == values["hidden_size"]:
            values["embedding_size"] = None
        if family == "gau_alpha" and values["key_size"] == 128:
            values["key_size"] = None
        return family_config(family, **values, **overrides)

    def to_hf_config(self) -> dict[str, Any]:
        """Hugging Face `config.json`: transformers' BERT and RoFormer for bert and v1, JunnYu's ports for RoFormerV2
        and GAU-α (model types `roformer_v2` and `gau_alpha`, which stock transformers refuses to load)."""
        if self.family == "bert":
            if self.embedding_size not in (None, self.hidden_size):
                raise ValueError(f"Hugging Face BERT has no embedding mapping; embedding_size={self.embedding_size} "
                                 f"differs from hidden_size={self.hidden_size}.")
            return {**self._shared_file_keys("Hugging Face config.json"), "model_type": "bert",
                    "architectures": ["BertForMaskedLM"], "initializer_range": self.initializer_range,
                    "layer_norm_eps": self.norm_epsilon, "pad_token_id": self.pad_token_id,
                    "position_embedding_type": "absolute"}
        out = {
            **self._shared_file_keys("Hugging Face config.json"),
            "embedding_size": self.resolved_embedding_size,
            "initializer_range": self.initializer_range,
            "layer_norm_eps": self.norm_epsilon,
            "pad_token_id": self.pad_token_id,
        }
        if self.family == "gau_alpha":
            out.update(model_type="gau_alpha", architectures=["GAUAlphaForMaskedLM"],
                       attention_key_size=self.resolved_key_size, use_bias=self.use_bias,
                       normalization=self.attention_normalization, attention_scale=self.attention_scale)
        else:
            out.update(model_type="roformer", architectures=["RoFormerForMaskedLM"], rotary_value=self.rotary_value)
            if self.family == "roformer_v2":
                out.update(model_type="roformer_v2", architectures=["RoFormerV2ForMaskedLM"], use_bias=self.use_bias,
                           norm_type="rms_norm")
        return out

    @classmethod
    def from_hf_config(cls, config: dict[str, Any] | str | os.PathLike, **overrides) -> ModelConfig:
        source = "config.json"
        if not isinstance(config, dict):
            source = str(config)
            config = _read_json(config)
        missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size")
                   if k not in config]
        if missing:
            raise KeyError(f"{source}: missing key(s) {missing}.")
        model_type = config.get("model_type", "roformer")
        if model_type == "bert":             # fairseq-style "roberta" offsets its positions: refused below
            position_type = config.get("position_embedding_type", "absolute")
            if position_type != "absolute":
                raise ValueError(f"{source}: position_embedding_type={position_type!r}; rofjax's BERT has learned "
                                 f"absolute positions only.")
            values = dict(_read_shared_file_keys(config), norm_epsilon=config.get("layer_norm_eps", 1e-12),
                          pad_token_id=config.get("pad_token_id", 0) or 0)
            values.pop("embedding_size", None)
            if "initializer_range" in config:
                values["initializer_range"] = config["initializer_range"]
            return family_config("bert", **values, **overrides)
        if model_type == "gau_alpha":
            family = "gau_alpha"
        elif model_type in ("roformer", "roformer_v2"):
            is_v2 = model_type == "roformer_v2" or config.get("norm_type", "layer_norm") != "layer_norm"
            family = "roformer_v2" if is_v2 else "roformer"
        else:
            raise ValueError(f"{source}: model_type={model_type!r} is not a BERT, RoFormer, RoFormerV2 or GAU-α "
                             f"config.")
        values = dict(_read_shared_file_keys(config), norm_epsilon=config.get("layer_norm_eps", 1e-12),
                      pad_token_id=config.get("pad_token_id", 0) or 0)
        if "initializer_range" in config:
            values["initializer_range"] = config["initializer_range"]
        if values["embedding_size"] == values["hidden_size"]:
            values["embedding_size"] = None
        if family == "gau_alpha":
            key_size = config.get("attention_key_size", 128)
            values.update(key_size=None if key_size == 128 else key_size,
                          attention_normalization=config.get("normalization", "softmax_plus"),
                          attention_scale=config.get("attention_scale", True),
                          use_bias=config.get("use_bias", False))
        else:
            values["rotary_value"] = config.get("rotary_value", False)
            if family == "roformer_v2":
                values["use_bias"] = config.get("use_bias", False)
        return family_config(family, **values, **overrides)


# Keys bert_config.json and Hugging Face config.json share, and the fields they hold.
_FILE_KEYS = (("vocab_size", "vocab_size"), ("hidden_size", "hidden_size"), ("num_hidden_layers", "num_layers"),
              ("num_attention_heads", "num_heads"), ("intermediate_size", "intermediate_size"),
              ("hidden_act", "hidden_act"), ("hidden_dropout_prob", "dropout_rate"),
              ("attention_probs_dropout_prob", "attention_dropout_rate"),
              ("max_position_embeddings", "max_position_embeddings"), ("type_vocab_size", "type_vocab_size"))
_FILE_DEFAULTS = {"num_attention_heads": 1, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                  "max_position_embeddings": 512, "type_vocab_size": 2}


def _read_shared_file_keys(config: dict[str, Any]) -> dict[str, Any]:
    """Fields from the shared keys; `hidden_act` is left to the family default when the file omits it."""
    values = {field: config.get(key, _FILE_DEFAULTS.get(key)) for key, field in _FILE_KEYS
              if key in config or key in _FILE_DEFAULTS}
    values["embedding_size"] = config.get("embedding_size")
    return values


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(ModelConfig)]


def _read_json(path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"Config file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}).") from None


def _write_json(path, values: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(values, f, indent=2, ensure_ascii=False, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


# Families and presets ------------------------------------------------------------------------------------------

_FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "bert": dict(
        block_type="attention", hidden_act="gelu", use_bias=True, norm_type="layernorm",
        dropout_before_embedding_norm=False, attention_normalization="softmax", initializer="bert",
        mlm_head="transform", position_embedding="absolute",
    ),
    "roformer": dict(
        block_type="attention", hidden_act="gelu", use_bias=True, norm_type="layernorm",
        dropout_before_embedding_norm=False, attention_normalization="softmax", initializer="bert",
        mlm_head="transform",
    ),
    "roformer_v2": dict(
        block_type="attention", hidden_act="relu", use_bias=False, norm_type="rmsnorm",
        dropout_before_embedding_norm=True, attention_normalization="softmax", initializer="depth_scaled",
        initializer_order=2, mlm_head="tied",
    ),
    "gau_alpha": dict(
        block_type="gau", hidden_act="swish", use_bias=False, norm_type="rmsnorm", num_heads=1,
        dropout_before_embedding_norm=True, attention_normalization="softmax_plus", initializer="depth_scaled",
        initializer_order=3, mlm_head="tied",
    ),
}


def family_config(family: str, **values) -> ModelConfig:
    """A config of `family` with its structural defaults, overridden by `values`."""
    if family not in FAMILIES:
        raise ValueError(f"Unknown model family {family!r}; expected one of {FAMILIES}.")
    merged = {**_FAMILY_DEFAULTS[family], **{k: v for k, v in values.items()}}
    return ModelConfig(family=family, **merged)


def _sizes(layers, hidden, heads, ffn, vocab, **extra):
    return dict(num_layers=layers, hidden_size=hidden, num_heads=heads, intermediate_size=ffn, vocab_size=vocab,
                **extra)


PRESETS: dict[str, ModelConfig] = {
    # Google's chinese_L-12_H-768_A-12 and HFL's Chinese RoBERTa-wwm-ext (base, large): BERT checkpoints, vocab 21128.
    "bert_chinese_base": family_config("bert", **_sizes(12, 768, 12, 3072, 21128)),
    "roberta_wwm_ext_chinese_base": family_config("bert", **_sizes(12, 768, 12, 3072, 21128)),
    "roberta_wwm_ext_chinese_large": family_config("bert", **_sizes(24, 1024, 16, 4096, 21128)),
    # RoFormer v1: chinese_roformer[-char]_L-{6,12}_H-{384,768}_A-{6,12}; word-level vocab 50000 (jieba).
    "roformer_chinese_char_small": family_config("roformer", **_sizes(6, 384, 6, 1536, 12000)),
    "roformer_chinese_char_base": family_config("roformer", **_sizes(12, 768, 12, 3072, 12000)),
    "roformer_chinese_small": family_config("roformer", **_sizes(6, 384, 6, 1536, 50000,
                                                                 max_position_embeddings=1536)),
    "roformer_chinese_base": family_config("roformer", **_sizes(12, 768, 12, 3072, 50000,
                                                                max_position_embeddings=1536)),
    # RoFormerV2: chinese_roformer-v2-char_L-{6,12,24}_H-{384,768,1024}_A-{6,12,16}.
    "roformer_v2_chinese_char_small": family_config("roformer_v2", **_sizes(6, 384, 6, 1536, 12000)),
    "roformer_v2_chinese_char_base": family_config("roformer_v2", **_sizes(12, 768, 12, 3072, 12000)),
    "roformer_v2_chinese_char_large": family_config("roformer_v2", **_sizes(24, 1024, 16, 4096, 12000)),
    # GAU-α: chinese_GAU-alpha-char_L-24_H-768 (e = 1536, s = 128, one head).
    "gau_alpha_chinese_char_base": family_config("gau_alpha", **_sizes(24, 768, 1, 1536, 12000)),
    # Tiny models for tests and demos.
    "bert_tiny": family_config("bert", **_sizes(2, 64, 4, 128, 1000)),
    "roformer_tiny": family_config("roformer", **_sizes(2, 64, 4, 128, 1000)),
    "roformer_v2_tiny": family_config("roformer_v2", **_sizes(2, 64, 4, 128, 1000)),
    "gau_alpha_tiny": family_config("gau_alpha", **_sizes(2, 64, 1, 128, 1000, key_size=32)),
}


def get_preset(name: str, **overrides) -> ModelConfig:
    """A preset by name, with fields overridden (e.g. `vocab_size=` for a new vocabulary)."""
    try:
        config = PRESETS[name]
    except KeyError:
        raise KeyError(f"Unknown model preset {name!r}; presets are {sorted(PRESETS)}.") from None
    return config.replace(**overrides) if overrides else config
