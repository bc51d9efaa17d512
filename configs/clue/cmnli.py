"""CMNLI natural-language inference (lines labelled "-" skipped).

    python -m train.finetune --config configs/clue/cmnli.py --workdir DIR --config.data.data_dir=FOLDER
    python -m train.predict --config configs/clue/cmnli.py --workdir DIR --config.data.data_dir=FOLDER
"""

from configs.clue.common import clue_config


def get_config():
    c = clue_config("cmnli")
    c.lock()
    return c
