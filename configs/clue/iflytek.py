"""IFLYTEK app descriptions, 119 classes.

    python -m train.finetune --config configs/clue/iflytek.py --workdir DIR --config.data.data_dir=FOLDER
    python -m train.predict --config configs/clue/iflytek.py --workdir DIR --config.data.data_dir=FOLDER
"""

from configs.clue.common import clue_config


def get_config():
    c = clue_config("iflytek")
    c.lock()
    return c
