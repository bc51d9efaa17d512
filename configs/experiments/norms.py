"""Pre-Norm vs Post-Norm (kexue.fm 9009) and the α-residual without warmup (kexue.fm 8620): masked-LM pre-training,
then sentiment and People's Daily NER fine-tuning from each checkpoint.

    rofjax experiment --config experiments/norms --workdir W [--config.smoke=True]
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.experiment = "norms"
    c.smoke = False                      # True: the seconds-long version the tests run
    c.seeds = 3                          # 36 runs, ~10 min on 2 CPU cores
    # Of rofjax.experiments.norms.VARIANTS; pre_norm_no_warmup is there too.
    c.variants = "pre_norm,post_norm,post_norm_no_warmup,alpha_no_warmup"
    c.tasks = "sentiment,ner"            # fine-tuning: configs/demo.py, configs/ie/peoples_daily_ner.py
    # One model shape for every variant (attention + FFN blocks, RMSNorm, RoPE, as RoFormerV2).
    c.num_layers = 6
    c.hidden_size = 32
    c.num_heads = 2
    c.intermediate_size = 128
    c.initializer = "xavier"             # plain: the α ramp, not the init, is what stands in for warmup
    # Pre-training (masked LM on the embedded corpus).
    c.pretrain_steps = 150
    c.pretrain_lr = 3e-3                 # AdamW peak, linear decay
    c.warmup_steps = 40                  # of the variants with warmup
    c.alpha_ramp_steps = 40              # α: 0 → 1 over these updates, then fixed
    c.clip_norm = 0.0                    # no gradient clipping in pre-training: nothing else may stand in for warmup
    c.max_length = 64
    c.batch_size = 8
    c.eval_examples = 128                # held-out documents for the pre-training loss
    c.ratio_examples = 16                # held-out documents on which ‖F(x)‖/‖x‖ is measured
    c.curve_every = 10                   # steps per point of the plotted loss
    # Fine-tuning: the same recipe for every variant.
    c.finetune_steps = 200
    c.finetune_lr = 2e-3
    c.finetune_warmup_steps = 20
    c.finetune_dropout = 0.1
    c.finetune_batch_size = 16
    c.finetune_max_length = 32
    c.finetune_eval_examples = 200       # first validation records scored
    c.compile_cache = True               # compile each distinct program once (seeds share the steps)
    c.smoke_settings = ml_collections.ConfigDict(
        {"seeds": 1, "num_layers": 2, "hidden_size": 16, "intermediate_size": 32, "pretrain_steps": 4,
         "warmup_steps": 2, "alpha_ramp_steps": 2, "max_length": 32, "batch_size": 8, "eval_examples": 8,
         "ratio_examples": 4, "curve_every": 2, "finetune_steps": 2, "finetune_warmup_steps": 1,
         "finetune_batch_size": 8, "finetune_max_length": 32, "finetune_eval_examples": 8})
    return c
