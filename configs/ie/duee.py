"""GPLinker event extraction in the DuEE 1.0 format.

    python -m train.finetune --config configs/ie/duee.py --workdir DIR [--config.data.data_dir=DUEE_FOLDER]

`data_dir` holds duee_train.json, duee_dev.json and duee_event_schema.json; left empty, a seeded generator
writes data with known answers (several events per sentence, shared triggers and arguments, nested spans).
"""

from configs.base import base_config, small_model


def get_config():
    c = base_config()
    c.task = "events"
    c.data.dataset = "duee"
    small_model(c)
    c.data.head_size = 32
    c.data.max_length = 64
    c.train.batch_size = 16
    c.train.total_steps = 1500
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 100
    c.eval.every = 500
    c.eval.examples = 300
    c.train.save_every = 500
    c.eval.best_metric = "event_f1"
    c.lock()
    return c
