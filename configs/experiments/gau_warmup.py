"""Post-Norm GAU vs attention + FFN stacks of increasing depth, masked LM with and without warmup (kexue.fm 8990).

    rofjax experiment --config experiments/gau_warmup --workdir W [--config.smoke=True]
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.experiment = "gau_warmup"
    c.smoke = False                      # True: the seconds-long version the tests run
    c.seeds = 2                          # 48 runs, ~9 min on 2 CPU cores; each further seed ~4 min
    c.blocks = "gau,attention"
    c.depths = "6,12,24"                 # blocks per stack, Post-Norm
    c.inits = "xavier,depth_scaled"
    c.warmup_steps = "0,20"              # 0: the peak lr from the first step
    c.hidden_size = 32                   # d; GAU e = 2d, attention FFN 4d
    c.gau_key_size = 8                   # s: s/n as the post's 128/512 at n = max_length
    c.gau_normalization = "squared_relu"   # the post's relu²(·)/n; GAU-α's own is softmax_plus
    c.num_heads = 2                      # attention blocks
    c.max_length = 32
    c.batch_size = 8
    c.steps = 80
    c.lr = 1e-2                          # AdamW peak: high, where warmup is what keeps a run stable
    c.decay = "linear"
    c.clip_norm = 0.0                    # no gradient clipping: nothing else may stand in for warmup
    c.eval_examples = 128                # held-out documents for the final loss
    c.ratio_examples = 16                # documents on which ‖F(x)‖/‖x‖ is measured at initialisation
    c.curve_every = 10                   # steps per point of the plotted loss
    c.data_dir = ""                      # the embedded corpus's tfds folder ("" → the cache)
    c.compile_cache = True               # compile each distinct program once (seeds share the step)
    c.smoke_settings = ml_collections.ConfigDict(
        {"seeds": 1, "depths": "2", "inits": "xavier", "warmup_steps": "0,2", "hidden_size": 16, "max_length": 16,
         "steps": 4, "eval_examples": 8, "ratio_examples": 4, "curve_every": 2})
    return c
