"""The position probe (kexue.fm 9105): n identical tokens → their indices, per attention normalisation.

    rofjax experiment --config experiments/probe --workdir W [--config.smoke=True]
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.experiment = "probe"
    c.smoke = False                      # True: the seconds-long version the tests run
    c.seeds = 3
    c.normalizations = "softmax,softmax_plus,l2,no_denominator,swish_l2,squared_relu"
    c.blocks = "attention,gau"
    c.layers = "1,2"
    c.min_length = 8                     # n, drawn per example
    c.max_length = 32
    c.hidden_size = 64
    c.num_heads = 4
    c.intermediate_size = 128            # FFN width; GAU: its expanded width
    c.gau_key_size = 32
    c.batch_size = 32
    c.steps = 400
    c.lr = 3e-3                          # Adam, constant
    c.eval_every = 40
    c.eval_size = 256                    # held-out examples
    c.solved_at = 0.9                    # token accuracy that counts as solving the probe
    c.smoke_settings = ml_collections.ConfigDict(
        {"seeds": 1, "steps": 4, "eval_every": 2, "eval_size": 16, "blocks": "attention", "layers": "1",
         "max_length": 12, "hidden_size": 16, "intermediate_size": 32})
    return c
