"""CLUENER2020 with Efficient GlobalPointer (10 types, head size 64, no bias).

    python -m train.finetune --config configs/clue/cluener.py --workdir DIR --config.data.data_dir=FOLDER
    python -m train.predict --config configs/clue/cluener.py --workdir DIR --config.data.data_dir=FOLDER
"""

from configs.clue.common import clue_config


def get_config():
    c = clue_config("cluener", max_length=256, best_metric='f1')
    c.data.head_size = 64
    c.lock()
    return c
