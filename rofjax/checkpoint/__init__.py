"""Checkpoints: orbax save/restore, and converters for bert4keras TF checkpoints and Hugging Face weights."""

from rofjax.checkpoint.bert4keras import load_bert4keras, save_bert4keras
from rofjax.checkpoint.huggingface import load_huggingface, save_huggingface
from rofjax.checkpoint.run import load_model_config, restore_params, save_params
from rofjax.checkpoint.tree import CheckpointMismatchError, ConversionReport, stack_layers, unstack_layers

__all__ = [
    "CheckpointMismatchError",
    "ConversionReport",
    "load_bert4keras",
    "load_huggingface",
    "load_model_config",
    "restore_params",
    "save_bert4keras",
    "save_huggingface",
    "save_params",
    "stack_layers",
    "unstack_layers",
]
