"""OCNLI natural-language inference, trained on train.50k.json.

    python -m train.finetune --config configs/clue/ocnli.py --workdir DIR --config.data.data_dir=FOLDER
    python -m train.predict --config configs/clue/ocnli.py --workdir DIR --config.data.data_dir=FOLDER
"""

from configs.clue.common import clue_config


def get_config():
    c = clue_config("ocnli")
    c.lock()
    return c
