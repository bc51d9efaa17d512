"""Tokens/s and MFU of the training step for a config, on whatever devices are present.

    python benchmarks/train_step.py --config configs/demo.py [--steps 20] [--config.train.batch_size=64 ...]

Runs the real Trainer (sharded jit step with donation) on synthetic batches of the config's shape, after one
compilation step, and prints tokens/s, examples/s and, where the device's peak FLOP/s is known (or given with
--config.train.peak_flops), model FLOPs utilisation. The ratio printed is against the same step with dropout off,
measured in the same run, which shows what the dropout masks cost on this device.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # configs/ imports configs.base

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from train._errors import parse_flags

config_flags.DEFINE_config_file("config", "configs/demo.py", "training config", lock_config=True)
flags.DEFINE_integer("steps", 20, "timed steps")
FLAGS = flags.FLAGS


def synthetic_batch(task, batch_size, rng):
    batch = task.init_batch(batch_size)
    vocab = task.model_config.vocab_size
    batch["input_ids"] = rng.integers(5, vocab, size=batch["input_ids"].shape).astype(np.int32)
    if "labels" in batch:
        batch["labels"] = rng.integers(0, task.num_labels, size=batch["labels"].shape).astype(np.int32)
    if "masked_weights" in batch:
        batch["masked_positions"] = rng.integers(0, task.max_length, size=batch["masked_positions"].shape)
        batch["masked_positions"] = batch["masked_positions"].astype(np.int32)
        batch["masked_labels"] = rng.integers(1, vocab, size=batch["masked_labels"].shape).astype(np.int32)
        batch["masked_weights"] = np.ones_like(batch["masked_weights"])
    return batch


def measure(config, steps):
    from rofjax.parallel.mesh import global_batch, mesh_from_config
    from rofjax.training.loop import PEAK_FLOPS, build_task
    from rofjax.training.optim import build_optimizer, learning_rate_schedule
    from rofjax.training.state import Trainer

    mesh = mesh_from_config(config)
    task = build_task(config)
    tx = build_optimizer(config.optim, config.train.total_steps)
    trainer = Trainer(task, tx, mesh, schedule=learning_rate_schedule(config.optim, config.train.total_steps))
    state = trainer.init_state(config.seed, config.train.batch_size)
    batch = global_batch(synthetic_batch(task, config.train.batch_size, np.random.default_rng(0)), mesh)
    state, metrics = trainer.train_step(state, batch)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = trainer.train_step(state, batch)
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - start) / steps
    peak = config.train.peak_flops or PEAK_FLOPS.get(jax.devices()[0].device_kind)
    mfu = config.train.batch_size * task.flops_per_example() / seconds / (peak * jax.device_count()) if peak else None
    return seconds, config.train.batch_size * config.data.max_length / seconds, mfu


def main(argv):
    del argv
    config = FLAGS.config
    seconds, tokens, mfu = measure(config, FLAGS.steps)
    quiet = config.copy_and_resolve_references()
    quiet.unlock()
    quiet.model.dropout_rate = 0.0
    quiet.model.attention_dropout_rate = 0.0
    base_seconds, _, _ = measure(quiet, FLAGS.steps)
    device = jax.devices()[0]
    print(f"{config.model.preset} batch {config.train.batch_size}×{config.data.max_length} on {jax.device_count()}× "
          f"{device.device_kind} ({device.platform})")
    print(f"step {seconds * 1e3:.1f} ms, {tokens:.0f} tokens/s (padding included), {config.train.batch_size / seconds:.1f} examples/s, "
          f"MFU {'n/a (unknown peak FLOP/s)' if mfu is None else f'{mfu:.1%}'}")
    print(f"ratio vs the same step without dropout: {base_seconds / seconds:.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
