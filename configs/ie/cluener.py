"""CLUENER2020 with Efficient GlobalPointer (10 types), from the user's CLUENER folder.

    python -m train.finetune --config configs/ie/cluener.py --workdir DIR --config.data.data_dir=CLUENER_FOLDER
"""

from configs.base import base_config


def get_config():
    c = base_config()
    c.task = "ner"
    c.data.dataset = "cluener"
    c.model.preset = "roformer_v2_tiny"
    c.data.head_size = 64
    c.data.max_length = 64
    c.train.batch_size = 32
    c.train.total_steps = 3000
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 100
    c.eval.every = 1000
    c.train.save_every = 1000
    c.eval.best_metric = "f1"
    c.lock()
    return c
