"""The RoFormerV2 / GAU-α CLUE recipe (seeds-spec §3.5): AdaFactor at a constant 5e-4 with momentum 0.9 and no
factoring, [CLS] pooling, segment ids all 0, dev evaluation and model selection every epoch.

Every task config takes the same overrides, e.g. the published weights converted with `rofjax convert`:

    python -m train.finetune --config configs/clue/tnews.py --workdir DIR --config.data.data_dir=CLUE/tnews \\
        --config.model.preset=roformer_v2_chinese_char_base --config.data.vocab_path=CKPT/vocab.txt \\
        --config.train.init_checkpoint=CONVERTED

Ladder Side-Tuning on a frozen backbone (Su's LST-CLUE: AdaFactor at 5e-3, same lengths, batches and epochs):
`--config.lst=su --config.train.init_checkpoint=BACKBONE` (`gated` for the paper's design);
or a tiny model from scratch on a CPU: `--config.model.preset=roformer_v2_tiny --config.train.total_steps=200`.
"""

from configs.base import base_config


def clue_config(task: str, *, max_length: int = 128, batch_size: int = 32, epochs: float = 10,
                grad_accum_steps: int = 1, best_metric: str = "accuracy"):
    c = base_config()
    c.task = "clue"
    c.data.dataset = task
    c.model.preset = "roformer_v2_chinese_char_base"
    c.data.max_length = max_length
    c.train.batch_size = batch_size
    c.train.epochs = float(epochs)
    c.train.total_steps = 0                        # 0: `epochs` passes over the training file
    c.eval.every = -1                        # every epoch
    c.train.save_every = 1000
    c.eval.best_metric = best_metric
    c.optim.name = "adafactor"
    c.optim.lr = 5e-4
    c.optim.momentum = 0.9
    c.optim.min_dim_size_to_factor = 10**6   # effectively unfactored, as the recipe sets it
    c.optim.warmup_steps = 0
    c.optim.decay = "constant"
    c.optim.weight_decay = 0.0
    c.optim.clip_norm = 0.0                  # AdaFactor clips its own updates (threshold 1.0)
    c.optim.grad_accum_steps = grad_accum_steps
    c.lst_lr = 5e-3                          # --config.lst=su|gated: Su's LST-CLUE rate, 10× the full recipe's
    c.train.log_every = 10
    return c
