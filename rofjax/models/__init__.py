"""Model configs, presets, the encoder and task heads."""

from rofjax.models.config import PRESETS, ModelConfig, family_config, get_preset
from rofjax.models.encoder import Encoder
from rofjax.models.heads import (
    GPLinker,
    MaskedLM,
    MultipleChoice,
    SequenceClassifier,
    SpanClassifier,
    TokenClassifier,
)

__all__ = [
    "PRESETS",
    "Encoder",
    "GPLinker",
    "MaskedLM",
    "ModelConfig",
    "MultipleChoice",
    "SequenceClassifier",
    "SpanClassifier",
    "TokenClassifier",
    "family_config",
    "get_preset",
]
