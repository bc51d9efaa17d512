"""GPLinker relation extraction in the DuIE format (files duie_train.json, duie_dev.json, duie_schema.json).

    python -m train.finetune --config configs/ie/duie.py --workdir DIR [--config.data.data_dir=DUIE_FOLDER]

Without `data_dir`, a seeded generator writes DuIE-format data with known answers.
"""

from configs.base import base_config, small_model


def get_config():
    c = base_config()
    c.task = "relations"
    c.data.dataset = "duie"
    small_model(c)
    c.data.head_size = 32
    c.data.max_length = 64
    c.train.batch_size = 16
    c.train.total_steps = 1000
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 100
    c.eval.every = 500
    c.eval.examples = 300
    c.train.save_every = 500
    c.eval.best_metric = "f1"
    c.lock()
    return c
