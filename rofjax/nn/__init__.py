"""Pure Flax Linen layers. Each formula lives in exactly one module here."""

from rofjax.nn.activations import get_activation
from rofjax.nn.attention import NORMALIZATIONS, MultiHeadAttention, attention_normalize
from rofjax.nn.dense import dense
from rofjax.nn.feedforward import FeedForward
from rofjax.nn.gau import GatedAttentionUnit
from rofjax.nn.global_pointer import EfficientGlobalPointer, GlobalPointer
from rofjax.nn.norms import LayerNorm, RMSNorm, ScaleOffset
from rofjax.nn.rope import RopeOptions, apply_rotary, rotary_angles, sinusoidal_embeddings

__all__ = [
    "NORMALIZATIONS",
    "EfficientGlobalPointer",
    "FeedForward",
    "GatedAttentionUnit",
    "GlobalPointer",
    "LayerNorm",
    "MultiHeadAttention",
    "RMSNorm",
    "RopeOptions",
    "ScaleOffset",
    "apply_rotary",
    "attention_normalize",
    "dense",
    "get_activation",
    "rotary_angles",
    "sinusoidal_embeddings",
]
