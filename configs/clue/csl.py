"""CSL keywords ↔ abstract: '；'.join(keyword) [SEP] abst.

    python -m train.finetune --config configs/clue/csl.py --workdir DIR --config.data.data_dir=FOLDER
    python -m train.predict --config configs/clue/csl.py --workdir DIR --config.data.data_dir=FOLDER
"""

from configs.clue.common import clue_config


def get_config():
    c = clue_config("csl")
    c.lock()
    return c
