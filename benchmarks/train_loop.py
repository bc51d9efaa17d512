"""What the training program's loop costs beyond its jitted step.

    python benchmarks/train_loop.py --config configs/pretrain/tiny_mlm.py [--steps 60] [--config.x=y ...]
    python benchmarks/train_loop.py --tree .base ...   # the same measurement of an earlier commit's tree

`benchmarks/train_step.py` and `encoder_step.py` time the jitted step alone, on a batch already on the device. A
run of `train.pretrain` / `train.finetune` also reads, encodes, packs and masks its batches on the host, copies
them to the device and reads back each step's metrics. This script measures, in one process:

* `loop`: `rofjax.training.loop.run` itself, run for W and for W + N steps in fresh folders with the compiled
  programs taken from a persistent compilation cache filled by a first run; the difference of the two wall times
  over N is the loop's time per step (start-up, compilation, the final evaluation and save cancel out);
* `step`: the same `Trainer`'s step, N times over batches already on the device (the ceiling);
* `host`: the input pipeline alone, one batch at a time without prefetching.

The ratio printed is step / loop: 1.00 means the loop adds nothing to the step. Without overlap the loop costs
about step + host; with the host work behind the device's, max(step, host).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--config", default="configs/pretrain/tiny_mlm.py")
parser.add_argument("--steps", type=int, default=60, help="N: the timed steps")
parser.add_argument("--warm", type=int, default=5, help="W: the steps of the shorter run")
parser.add_argument("--repeats", type=int, default=2, help="pairs of runs; the median difference is reported")
parser.add_argument("--tree", default=None, help="import rofjax and configs/ from this folder (an earlier tree)")
args, overrides = parser.parse_known_args()

TREE = os.path.abspath(args.tree or os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, TREE)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from _config_cli import define_config  # noqa: E402
from absl import flags  # noqa: E402

config_path = define_config(parser, args.config, overrides, TREE, "training config")


def configured(total_steps):
    config = flags.FLAGS.config.copy_and_resolve_references()
    config.train.total_steps = total_steps
    config.train.save_every = 10 ** 9              # only the final save, the same in both runs
    config.train.progress_bar = False
    config.eval.every = 0
    config.eval.examples = min(config.eval.examples or 64, 64)
    return config


def loop_seconds_per_step(scratch):
    from rofjax.training.loop import run

    def timed(total, name):
        started = time.perf_counter()
        run(configured(total), os.path.join(scratch, name))
        return time.perf_counter() - started

    timed(args.warm, "fill-cache")
    differences = []
    for repeat in range(args.repeats):
        short = timed(args.warm, f"short{repeat}")
        long = timed(args.warm + args.steps, f"long{repeat}")
        differences.append((long - short) / args.steps)
    return statistics.median(differences), differences


def step_and_host_seconds(config):
    from rofjax.data.datasets import get_dataset
    from rofjax.data.pipeline import train_iterator
    from rofjax.parallel.mesh import global_batch, mesh_from_config
    from rofjax.training.loop import build_task, build_trainer

    mesh = mesh_from_config(config)
    task = build_task(config)
    spec = get_dataset(config.data.dataset)
    records = spec.split("train", config.data.data_dir, config.seed)
    if task.expands_records:
        records = [example for record in records for example in task.expand(record)]
    kwargs = {"prefetch": 0} if "prefetch" in config.data else {}
    iterator = train_iterator(task, records, batch_size=config.train.batch_size, seed=config.seed, **kwargs)
    local = [next(iterator) for _ in range(2)]
    started = time.perf_counter()
    for _ in range(args.steps // 2):
        next(iterator)
    host = (time.perf_counter() - started) / (args.steps // 2)

    trainer = build_trainer(config, task, mesh, config.train.total_steps)
    state = trainer.init_state(config.seed, config.train.batch_size)
    batches = [global_batch(b, mesh) for b in local]
    state, metrics = trainer.train_step(state, batches[0])
    jax.block_until_ready(metrics)
    started = time.perf_counter()
    for index in range(args.steps):
        state, metrics = trainer.train_step(state, batches[index % 2])
    jax.block_until_ready((state, metrics))
    return (time.perf_counter() - started) / args.steps, host


def main():
    with tempfile.TemporaryDirectory() as scratch:
        jax.config.update("jax_compilation_cache_dir", os.path.join(scratch, "jax-cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        loop, differences = loop_seconds_per_step(scratch)
        step, host = step_and_host_seconds(configured(args.warm + args.steps))
    config = flags.FLAGS.config
    device = jax.devices()[0]
    print(f"tree {TREE}; {config.task} {config.model.preset} batch {config.train.batch_size}×"
          f"{config.data.max_length} on {jax.device_count()}× {device.device_kind} ({device.platform}), "
          f"{os.cpu_count()} host cores")
    print(f"loop {loop * 1e3:.1f} ms/step (pairs: {', '.join(f'{d * 1e3:.1f}' for d in differences)}), "
          f"step {step * 1e3:.1f} ms, host pipeline {host * 1e3:.1f} ms/batch")
    print(f"ratio step / loop: {step / loop:.2f}x (no overlap would give about {step / (step + host):.2f}x)")
    sys.stdout.flush()


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
