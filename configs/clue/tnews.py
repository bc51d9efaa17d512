"""TNEWS 1.1 news titles, 15 classes.

    python -m train.finetune --config configs/clue/tnews.py --workdir DIR --config.data.data_dir=FOLDER
    python -m train.predict --config configs/clue/tnews.py --workdir DIR --config.data.data_dir=FOLDER
"""

from configs.clue.common import clue_config


def get_config():
    c = clue_config("tnews")
    c.lock()
    return c
