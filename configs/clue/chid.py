"""CHID idiom cloze: left [SEP] candidate [SEP] right, Hungarian assignment per passage on dev, gradient accumulation 2.

    python -m train.finetune --config configs/clue/chid.py --workdir DIR --config.data.data_dir=FOLDER
    python -m train.predict --config configs/clue/chid.py --workdir DIR --config.data.data_dir=FOLDER
"""

from configs.clue.common import clue_config


def get_config():
    c = clue_config("chid", max_length=64, batch_size=12, epochs=5, grad_accum_steps=2)
    c.lock()
    return c
