"""GPLinker on DuEE-fin (document-level financial events; enumerated roles attached to the trigger span).

    python -m train.finetune --config configs/ie/duee_fin.py --workdir DIR --config.data.data_dir=DUEE_FIN_FOLDER

The folder holds duee_fin_train.json, duee_fin_dev.json and duee_fin_event_schema.json. The authors use
maxlen 400 and batch 16 with a base model; this config is sized for a first run.
"""

from configs.ie.duee import get_config as duee_config


def get_config():
    c = duee_config()
    c.data.dataset = "duee_fin"
    c.data.max_length = 256
    c.train.batch_size = 8
    return c
