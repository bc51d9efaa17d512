"""C3 multiple choice: passage [SEP] question [SEP] choice per choice, gradient accumulation 4.

    python -m train.finetune --config configs/clue/c3.py --workdir DIR --config.data.data_dir=FOLDER
    python -m train.predict --config configs/clue/c3.py --workdir DIR --config.data.data_dir=FOLDER
"""

from configs.clue.common import clue_config


def get_config():
    c = clue_config("c3", max_length=512, batch_size=4, grad_accum_steps=4)
    c.lock()
    return c
