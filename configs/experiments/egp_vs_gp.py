"""GlobalPointer vs Efficient GlobalPointer heads on People's Daily NER (kexue.fm 8877, 8926).

    rofjax experiment --config experiments/egp_vs_gp --workdir W [--config.smoke=True]
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.experiment = "egp_vs_gp"
    c.smoke = False                      # True: the seconds-long version the tests run
    c.seeds = 3
    # The encoder both heads share (RoFormerV2, from scratch), as configs/base.small_model but narrower FFN.
    c.num_layers = 2
    c.hidden_size = 128
    c.num_heads = 2
    c.intermediate_size = 256
    c.head_size = 32                     # d of both pointers
    c.max_length = 64                    # tokens per training example; dev texts are decoded in windows
    c.batch_size = 16
    c.steps = 400
    c.lr = 2e-3                          # AdamW, linear warmup then linear decay (the NER recipe's optimiser)
    c.warmup_steps = 40
    c.eval_every = 50
    c.eval_examples = 300                # the first dev records, every evaluation
    c.early_step = 100                   # "starts faster": dev F1 at the first evaluation at or after this step
    c.smoke_settings = ml_collections.ConfigDict(
        {"seeds": 1, "steps": 4, "eval_every": 2, "eval_examples": 8, "early_step": 2, "batch_size": 8,
         "num_layers": 1, "hidden_size": 32, "intermediate_size": 64, "head_size": 8, "max_length": 32,
         "warmup_steps": 1})
    return c
