"""Save and restore parameter trees with orbax, onto any mesh.

Layouts understood by `restore_params`:

* `save_params` output: `DIR/params` (an orbax PyTree) and `DIR/model_config.json`;
* a training run's `orbax.checkpoint.CheckpointManager` root, `DIR/<step>/state` whose tree has a `params` key —
  only the parameters are read (fine-tuning from a pretraining checkpoint leaves the optimizer state on disk);
* a bare orbax PyTree folder.

Restores take target shardings, so a checkpoint written on one mesh is read onto another. Orbax writes into a
temporary folder and renames it when complete, so an interrupted save never looks like a checkpoint.
"""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import linen as nn

from rofjax.checkpoint.tree import CheckpointMismatchError, flatten
from rofjax.models.config import ModelConfig

PARAMS_ITEM = "params"
STATE_ITEM = "state"
CONFIG_FILE = "model_config.json"
_STEP_DIR = re.compile(r"^\d+$")


def save_params(directory: str | os.PathLike, params, config: ModelConfig | None = None, *,
                overwrite: bool = False) -> str:
    """Write `params` (boxed or not, sharded or not) under `directory/params`, and the config beside it."""
    directory = os.path.abspath(os.fspath(directory))
    target = os.path.join(directory, PARAMS_ITEM)
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it.")
    os.makedirs(directory, exist_ok=True)
    params = nn.unbox(params)
    if isinstance(params, dict) and set(params) == {"params"}:
        params = params["params"]
    with ocp.PyTreeCheckpointer() as checkpointer:
        checkpointer.save(target, params, force=overwrite)
    if config is not None:
        config.to_json(os.path.join(directory, CONFIG_FILE))
    return target


def load_model_config(directory: str | os.PathLike) -> ModelConfig:
    return ModelConfig.from_json(os.path.join(os.fspath(directory), CONFIG_FILE))


def latest_step(directory: str | os.PathLike) -> int | None:
    """Newest complete step of a CheckpointManager root (orbax renames a step folder only once it is complete)."""
    directory = os.fspath(directory)
    steps = [int(name) for name in os.listdir(directory)
             if _STEP_DIR.match(name) and os.path.isdir(os.path.join(directory, name))]
    return max(steps) if steps else None


def _locate(directory: str, step: int | None) -> tuple[str, str | None]:
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"No checkpoint folder at {directory}.")
    if os.path.isdir(os.path.join(directory, PARAMS_ITEM)):
        return os.path.join(directory, PARAMS_ITEM), None
    if os.path.isdir(os.path.join(directory, STATE_ITEM)):
        return os.path.join(directory, STATE_ITEM), PARAMS_ITEM
    chosen = step if step is not None else latest_step(directory)
    if chosen is not None:
        step_dir = os.path.join(directory, str(chosen))
        if not os.path.isdir(step_dir):
            raise FileNotFoundError(f"{directory} has no step {chosen}; steps: {sorted_steps(directory)}.")
        return _locate(step_dir, None)
    if os.path.exists(os.path.join(directory, "_METADATA")):
        return directory, None
    raise FileNotFoundError(f"{directory} holds no rofjax parameters (expected {PARAMS_ITEM}/, {STATE_ITEM}/ or "
                            f"numbered step folders).")


def sorted_steps(directory: str) -> list[int]:
    return sorted(int(n) for n in os.listdir(directory) if _STEP_DIR.match(n))


def _metadata_tree(checkpointer, path: str):
    metadata = checkpointer.metadata(path)
    metadata = getattr(metadata, "item_metadata", metadata)
    return getattr(metadata, "tree", metadata)


def restore_params(directory: str | os.PathLike, *, target=None, shardings=None, step: int | None = None):
    """Read parameters saved by `save_params` or by a training run.

    `target`: a tree of arrays or `jax.ShapeDtypeStruct`s whose structure, shapes and dtypes the result takes
    (a `ShapeDtypeStruct`'s sharding is honoured); `shardings`: a matching tree of `jax.sharding.Sharding`s.
    Without either, the checkpoint's own tree is restored onto the default device. A tree or shape mismatch
    names the parameter.
    """
    path, key = _locate(os.path.abspath(os.fspath(directory)), step)
    with ocp.PyTreeCheckpointer() as checkpointer:
        stored = _metadata_tree(checkpointer, path)
        if key is not None:
            if key not in stored:
                raise CheckpointMismatchError(f"{path} has no '{key}' entry; it holds {sorted(stored)}.")
            stored = stored[key]
        if target is None:
            target = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), stored)
        else:
            target = nn.unbox(target)
            _check_against(stored, target, path)
        if shardings is None:
            default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
            shardings = jax.tree_util.tree_map(lambda t: getattr(t, "sharding", None) or default, target)
        abstract = jax.tree_util.tree_map(
            lambda t, s: jax.ShapeDtypeStruct(tuple(np.shape(t)), jnp.result_type(t), sharding=s), target, shardings)
        item = {key: abstract} if key is not None else abstract
        restored = checkpointer.restore(path, args=ocp.args.PyTreeRestore(
            item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
            partial_restore=key is not None))
    return restored[key] if key is not None else restored


def _check_against(stored, target, path: str) -> None:
    have = {k: tuple(v.shape) for k, v in flatten(_as_dict(stored)).items()}
    want = {k: tuple(np.shape(v)) for k, v in flatten(_as_dict(target)).items()}
    missing = sorted(set(want) - set(have))
    if missing:
        raise CheckpointMismatchError(f"{path} lacks parameter {missing[0]}"
                                      + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                                      + "; is the checkpoint from a different model or scan_layers setting?")
    extra = sorted(set(have) - set(want))
    if extra:
        raise CheckpointMismatchError(f"{path} holds parameter {extra[0]}"
                                      + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
                                      + " that the target does not have.")
    for name in sorted(want):
        if want[name] != have[name]:
            raise CheckpointMismatchError(f"{path}: parameter {name} is stored with shape {have[name]} but the "
                                          f"target needs {want[name]}.")


def _as_dict(tree: Any):
    if isinstance(tree, dict):
        return {k: _as_dict(v) for k, v in tree.items()}
    return tree
