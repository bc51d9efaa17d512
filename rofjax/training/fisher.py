"""Fisher information of a task's parameters, and the Fisher-pruned start of a `gated` Ladder Side-Tuning network.

The paper's `fisher-v2` initialisation (Sung, Cho and Bansal, arXiv 2206.06522; ylsung/Ladder-Side-Tuning
`seq2seq/pruning/fisher.py`) scores every backbone weight by the squared gradient of the task loss, summed over
single training examples (1,024 by default) of the model without its side network, in evaluation mode; the
pruning itself is `rofjax.models.ladder.fisher_pruned_side`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from rofjax.models.ladder import ENCODER, SIDE, fisher_pruned_side

__all__ = ["fisher_information", "fisher_side_init"]


def fisher_information(loss_fn: Callable, params, batches: Iterable[dict], examples: int):
    """`(Σ (∂ loss_fn(params, example) / ∂ params)², examples used)` over the first `examples` rows of `batches`,
    each row on its own (a batch of one): the diagonal of the empirical Fisher information. Fewer rows than
    `examples` in `batches` uses them all."""
    if examples < 1:
        raise ValueError(f"fisher_information: examples={examples}; expected ≥ 1.")

    @jax.jit
    def batch_sum(params, batch, count):
        zeros = jax.tree_util.tree_map(lambda p: jnp.zeros(p.shape, jnp.float32), params)

        def one(total, item):
            index, example = item
            grads = jax.grad(loss_fn)(params, jax.tree_util.tree_map(lambda x: x[None], example))
            weight = (index < count).astype(jnp.float32)         # rows past `count` are read but not counted
            return jax.tree_util.tree_map(lambda t, g: t + weight * jnp.square(g.astype(jnp.float32)),
                                          total, grads), None

        rows = jax.tree_util.tree_leaves(batch)[0].shape[0]
        return jax.lax.scan(one, zeros, (jnp.arange(rows), batch))[0]

    total, seen = None, 0
    for batch in batches:
        rows = jax.tree_util.tree_leaves(batch)[0].shape[0]
        count = min(rows, examples - seen)
        part = batch_sum(params, batch, count)
        total = part if total is None else jax.tree_util.tree_map(jnp.add, total, part)
        seen += count
        if seen >= examples:
            break
    if total is None:
        raise ValueError("fisher_information: no training examples to score the parameters with.")
    return total, seen


def _without_side(tree: dict) -> dict:
    return {key: ({k: v for k, v in value.items() if k != SIDE} if key == ENCODER else value)
            for key, value in tree.items()}


def fisher_side_init(config, task, state, batches: Iterable[dict]):
    """`(state, examples used)`: `state` with its `gated` side blocks pruned from the frozen backbone by Fisher
    information (`config.lst_fisher_examples` training examples of `batches`). The importance is measured on the task's model
    without the side network (backbone + the state's own head, which reads the backbone's width) with dropout
    off, as the paper measures it on the plain pre-trained model."""
    from rofjax.training.tasks import build_task

    model_config = task.model_config
    if model_config.lst != "gated":
        raise ValueError(f"config.lst_init='fisher' prunes the backbone into a lst='gated' side network; this run "
                         f"has lst={model_config.lst!r} (use lst_init='random').")
    plain_config = config.copy_and_resolve_references()
    with plain_config.unlocked():
        plain_config.lst = ""
        plain_config.model.dropout_rate = 0.0
        plain_config.model.attention_dropout_rate = 0.0
    plain = build_task(plain_config)
    params = _without_side(state.full_params())
    expected = jax.tree_util.tree_structure(nn.unbox(jax.eval_shape(
        lambda: plain.init_params(jax.random.key(0), plain.init_batch(1)))))
    if jax.tree_util.tree_structure(params) != expected:
        raise ValueError("config.lst_init='fisher': the task's head does not fit the model without its side network, "
                         "so the backbone's Fisher information cannot be measured for this task.")
    key = jax.random.key(0)                                       # no dropout: the key is never drawn from

    def loss_fn(p, batch):
        return plain.loss(p, batch, key, None)[0]

    examples = int(config.lst_fisher_examples)
    importance, seen = fisher_information(loss_fn, params, batches, examples)
    importance = jax.device_get(importance)
    if seen < examples:
        print(f"warning: Fisher information from {seen} training examples (config.lst_fisher_examples={examples})",
              file=sys.stderr)
    pruned = fisher_pruned_side(model_config, jax.device_get(params[ENCODER]), importance[ENCODER])
    side = dict(state.params[ENCODER][SIDE])
    for name, value in pruned.items():
        side[name] = _placed_like(side[name], value, name)
    encoder = {**state.params[ENCODER], SIDE: side}
    new_params = {**state.params, ENCODER: encoder}
    return state.replace(params=new_params, ema_params=new_params if state.ema_params is not None else None), seen


def _placed_like(old, new, where: str):
    """`new` (numpy) with `old`'s dtypes and shardings; a tensor missing, extra or shaped otherwise is an error
    naming it."""
    old_paths = {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(old)[0]}
    new_paths = {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(new)[0]}
    for path in sorted(set(old_paths) ^ set(new_paths)):
        raise ValueError(f"Fisher pruning and the side network disagree on side/{where}{path} (present in only one).")
    for path, leaf in old_paths.items():
        if np.shape(new_paths[path]) != leaf.shape:
            raise ValueError(f"Fisher pruning made side/{where}{path} {np.shape(new_paths[path])}, but the side "
                             f"network has {leaf.shape}.")
    return jax.tree_util.tree_map(lambda leaf, value: jax.device_put(np.asarray(value, leaf.dtype), leaf.sharding),
                                  old, new)
