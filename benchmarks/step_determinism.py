"""Is a config's gradient the same, bit for bit, each time it is computed? Repeats the jitted loss, gradient and
global gradient norm of the config's task on a few fixed training batches and names every repetition that differs
from the first, and the parameters whose gradient did.

    python benchmarks/step_determinism.py [--config configs/ie/peoples_daily_ner.py] [--repeats 400] [--batches 4]

The demo run has diverged from an identical run once in about 7,500 steps (README, the main job): the loss of the
step equal, its gradient norm not. Rare events need many repetitions; run it on a busy machine too.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/ie/peoples_daily_ner.py")
    parser.add_argument("--repeats", type=int, default=400, help="passes over the fixed batches")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--trainer", action="store_true",
                        help="repeat the Trainer's whole step (gradient, clipping, update) from one state instead")
    args = parser.parse_args(argv)

    import runpy

    import jax
    from flax import linen as nn

    from rofjax.data.datasets import get_dataset
    from rofjax.data.pipeline import train_iterator
    from rofjax.training.tasks import build_task

    config = runpy.run_path(args.config)["get_config"]()
    task = build_task(config)
    records = get_dataset(config.data.dataset).split("train", config.data.data_dir, config.seed)
    iterator = train_iterator(task, records, batch_size=config.train.batch_size, seed=config.seed, prefetch=0)
    batches = [next(iterator) for _ in range(args.batches)]
    iterator.close()
    params = nn.unbox(task.init_params(jax.random.key(config.seed), task.init_batch(config.train.batch_size)))

    if args.trainer:
        import jax.numpy as jnp

        from rofjax.parallel.mesh import mesh_from_config
        from rofjax.training.loop import build_trainer

        trainer = build_trainer(config, task, mesh_from_config(config), int(config.train.total_steps))
        state = trainer.init_state(config.seed, config.train.batch_size)
        state = state.replace(step=state.step + config.optim.warmup_steps)     # past warm-up: a nonzero update

        def gradient(params, batch):                   # the step donates its state: each call gets a copy
            new_state, metrics = trainer.train_step(jax.tree_util.tree_map(jnp.copy, state), batch)
            return metrics["loss"], metrics["grad_norm"], new_state.params
    else:
        gradient = jax.jit(_gradient(task))
    run(args, params, batches, gradient)


def _gradient(task):
    import jax
    import optax

    def gradient(params, batch):
        def loss(p):
            return task.loss(p, batch, jax.random.key(1), 0)

        (value, _), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return value, optax.global_norm(grads), grads

    return gradient


def run(args, params, batches, gradient):
    import time

    import jax
    import numpy as np

    def leaves(result):
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(result)]

    names = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(params)]
    first = [leaves(jax.device_get(gradient(params, batch))) for batch in batches]
    differing, start = 0, time.perf_counter()
    for repeat in range(args.repeats):
        for index, batch in enumerate(batches):
            now = leaves(jax.device_get(gradient(params, batch)))
            changed = [i for i, (a, b) in enumerate(zip(now, first[index])) if a.tobytes() != b.tobytes()]
            if changed:
                differing += 1
                # leaves: loss, norm, then the gradient's (or the updated parameters') leaves in parameter order
                what = ["loss" if i == 0 else "norm" if i == 1 else names[i - 2] for i in changed]
                print(f"repeat {repeat}, batch {index}: differs in {', '.join(what[:6])}"
                      + (f" (+{len(what) - 6})" if len(what) > 6 else ""), flush=True)
    total = args.repeats * len(batches)
    print(f"{differing} of {total} gradients differed from the first of their batch "
          f"({time.perf_counter() - start:.0f} s, {jax.devices()[0].platform})")


if __name__ == "__main__":
    main()
