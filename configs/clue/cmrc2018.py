"""CMRC2018 span extraction: 512-token windows every 128 tokens, GlobalPointer(heads=1), gradient accumulation 2.

    python -m train.finetune --config configs/clue/cmrc2018.py --workdir DIR --config.data.data_dir=FOLDER
    python -m train.predict --config configs/clue/cmrc2018.py --workdir DIR --config.data.data_dir=FOLDER
"""

from configs.clue.common import clue_config


def get_config():
    c = clue_config("cmrc2018", max_length=512, batch_size=16, grad_accum_steps=2, best_metric='em')
    c.data.head_size = 64
    c.data.doc_stride = 128
    c.lock()
    return c
