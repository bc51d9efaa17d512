"""Soft-label ZLPR (kexue.fm 9064): hard targets, label smoothing and mixup on a 3-label People's Daily task,
micro F1 and calibration of σ(2s).

    rofjax experiment --config experiments/zlpr_soft --workdir W [--config.smoke=True]
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.experiment = "zlpr_soft"
    c.smoke = False                      # True: the seconds-long version the tests run
    c.seeds = 3
    c.num_layers = 2                     # RoFormerV2 encoder, from scratch
    c.hidden_size = 128
    c.num_heads = 2
    c.intermediate_size = 256
    c.dropout_rate = 0.1
    c.pooling = "mean"                   # mean (over real tokens) | cls
    c.max_length = 64                    # tokens read per sentence; labels count only entities inside them
    c.batch_size = 32
    c.steps = 250
    c.lr = 2e-3                          # AdamW (rofjax.training.optim), linear warmup then linear decay
    c.warmup_steps = 25
    c.label_smoothing = 0.1              # ε: targets (1 − ε) y + ε/2
    c.mixup_alpha = 0.4                  # λ ~ Beta(α, α) per example
    c.train_examples = 0                 # the first records of the train split (0: all)
    c.eval_examples = 0                  # the first records of the validation split (0: all)
    c.bins = 10                          # equal-width probability bins of the ECE and the reliability diagram
    c.smoke_settings = ml_collections.ConfigDict(
        {"seeds": 1, "steps": 3, "warmup_steps": 1, "batch_size": 8, "max_length": 24, "num_layers": 1,
         "hidden_size": 32, "intermediate_size": 64, "train_examples": 64, "eval_examples": 32})
    return c
