"""CLUENER2020 with Efficient GlobalPointer (10 types), from the user's CLUENER folder.

    python -m train.finetune --config configs/ie/cluener.py --workdir DIR --config.data_dir=CLUENER_FOLDER
"""

from configs.base import base_config


def get_config():
    c = base_config()
    c.task = "ner"
    c.dataset = "cluener"
    c.model_preset = "roformer_v2_tiny"
    c.head_size = 64
    c.max_length = 64
    c.batch_size = 32
    c.total_steps = 3000
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 100
    c.eval_every = 1000
    c.save_every = 1000
    c.best_metric = "f1"
    c.lock()
    return c
