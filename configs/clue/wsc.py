"""CLUEWSC2020 coreference: both spans wrapped in [[…]], 30 epochs.

    python -m train.finetune --config configs/clue/wsc.py --workdir DIR --config.data.data_dir=FOLDER
    python -m train.predict --config configs/clue/wsc.py --workdir DIR --config.data.data_dir=FOLDER
"""

from configs.clue.common import clue_config


def get_config():
    c = clue_config("wsc", epochs=30)
    c.lock()
    return c
