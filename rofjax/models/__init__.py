"""Model configs, presets, the encoder and task heads."""

from rofjax.models.config import PRESETS, ModelConfig, family_config, get_preset
from rofjax.models.encoder import Encoder

__all__ = ["PRESETS", "Encoder", "ModelConfig", "family_config", "get_preset"]
