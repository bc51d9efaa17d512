"""GAU-α vs RoFormerV2 across sequence lengths: step time and memory at a fixed number of tokens per step.

    rofjax experiment --config experiments/gau_vs_attention --workdir W [--config.smoke=True]
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.experiment = "gau_vs_attention"
    c.smoke = False
    c.seeds = 3                          # repeats of the timing (one compile per model and length)
    c.rounds = 5                         # timed steps per repeat (the median is kept)
    c.lengths = "128,512,2048"
    c.tokens_per_step = 4096             # batch = tokens_per_step // length
    c.hidden_size = 256                  # RoFormerV2: num_layers × (attention + FFN of 4·hidden)
    c.num_layers = 4                     # GAU-α: 2·num_layers GAU layers of width 2·hidden, one head
    c.num_heads = 4
    c.gau_key_size = 64
    c.vocab_size = 12000
    c.gau_chunk_size = 128               # FLASH mixed chunks, from chunk_from_length on
    c.chunk_from_length = 2048
    c.smoke_settings = ml_collections.ConfigDict(
        {"seeds": 1, "rounds": 1, "lengths": "32,64", "tokens_per_step": 128, "hidden_size": 32, "num_layers": 1,
         "num_heads": 2, "gau_key_size": 16, "vocab_size": 100, "gau_chunk_size": 16, "chunk_from_length": 64})
    return c
