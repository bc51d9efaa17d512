"""AFQMC question matching: sentence1 [SEP] sentence2 with segment ids 0.

    python -m train.finetune --config configs/clue/afqmc.py --workdir DIR --config.data.data_dir=FOLDER
    python -m train.predict --config configs/clue/afqmc.py --workdir DIR --config.data.data_dir=FOLDER
"""

from configs.clue.common import clue_config


def get_config():
    c = clue_config("afqmc")
    c.lock()
    return c
