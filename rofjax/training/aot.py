"""Ahead-of-time compilation of the real train step for devices that are not attached (a TPU slice, N host devices).

`compile_train_step(config, devices, out_dir)` builds the task, optimizer, mesh and `Trainer` of a training config
exactly as `run` does, lowers the step on abstract (shape-only) state and batch, compiles it for `devices`, and
writes what a pod user needs before booking the pod:

    train_step.stablehlo.txt   the lowered module before partitioning (the sharding constraints are visible here)
    train_step.hlo.txt         the optimised, partitioned HLO of one device
    memory.json                per-device argument / output / temporary / alias bytes, total, and the device memory
    cost.json                  XLA's FLOP and byte counts for one step, and the model FLOPs rofjax counts
"""

from __future__ import annotations

import json
import math
import os
import re
import time

import jax

from rofjax.parallel.mesh import batch_sharding, create_mesh
from rofjax.parallel.topology import device_memory_bytes


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _cost(compiled) -> dict:
    try:
        cost = compiled.cost_analysis()
    except Exception:   # noqa: BLE001 (not every backend reports it)
        return {}
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    keep = ("flops", "bytes accessed", "transcendentals")
    return {key: float(value) for key, value in (cost or {}).items() if key in keep}


_OUT_OF_MEMORY = re.compile(r"memory required for ([^(]*)\(([\d.]+)([KMGT]?)\)")
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _shard_bytes(tree) -> int:
    """Bytes one device holds of a tree of sharded shape structs (the step's arguments)."""
    total = 0
    for leaf in jax.tree_util.tree_leaves(tree):
        shape = leaf.sharding.shard_shape(leaf.shape) if getattr(leaf, "sharding", None) is not None else leaf.shape
        total += math.prod(shape) * leaf.dtype.itemsize
    return total


def _out_of_memory(error: Exception) -> int | None:
    """The bytes a compiler that refused the program (TPU: RESOURCE_EXHAUSTED) said it needed, if it said."""
    text = str(error)
    if "RESOURCE_EXHAUSTED" not in text and "Ran out of memory" not in text:
        return None
    match = _OUT_OF_MEMORY.search(text)
    return int(float(match.group(2)) * _UNITS[match.group(3)]) if match else 0


def build_trainer(config, devices):
    """The `Trainer` of `config` on a mesh of `devices` (shapes only: the vocabulary file need not match)."""
    from rofjax.training import loop

    mesh_cfg = config.mesh
    mesh = create_mesh(mesh_cfg.data, mesh_cfg.fsdp, mesh_cfg.tensor, devices=devices)
    loop.check_batch_fits_mesh(config, mesh)
    return loop.build_trainer(config, loop.build_task(config, shapes_only=True), mesh, max(1, int(config.train.total_steps)))


def compile_train_step(config, devices, out_dir: str) -> dict:
    """Compile the train step of `config` for `devices`; write the four files to `out_dir` and return the report."""
    trainer = build_trainer(config, devices)
    mesh = trainer.mesh
    state = trainer.abstract_state(config.train.batch_size)
    batch = {key: jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=batch_sharding(mesh, value.ndim))
             for key, value in trainer.task.init_batch(config.train.batch_size).items()}
    start = time.perf_counter()
    lowered = trainer.lower_train_step(state, batch)
    stablehlo = lowered.as_text()
    os.makedirs(out_dir, exist_ok=True)          # only once the config has built and lowered: no empty folder
    _write(os.path.join(out_dir, "train_step.stablehlo.txt"), stablehlo)
    capacity = device_memory_bytes(devices)
    try:
        compiled = lowered.compile()
    except Exception as error:   # noqa: BLE001 (only a refusal for lack of memory is a result; the rest re-raise)
        needed = _out_of_memory(error)
        if needed is None:
            raise
        compiled = None
        message = str(error).strip().splitlines()[0]
        _write(os.path.join(out_dir, "train_step.hlo.txt"), f"# not compiled: {message}\n")
        arguments = _shard_bytes((state, batch))
        memory = {"argument_size_in_bytes": arguments, "output_size_in_bytes": _shard_bytes(state),
                  "temp_size_in_bytes": needed, "alias_size_in_bytes": _shard_bytes(state),
                  "generated_code_size_in_bytes": 0, "compiler_error": message}
    seconds = time.perf_counter() - start
    if compiled is not None:
        _write(os.path.join(out_dir, "train_step.hlo.txt"), compiled.as_text())
        analysis = compiled.memory_analysis()
        fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "alias_size_in_bytes",
                  "generated_code_size_in_bytes")
        memory = {name: int(getattr(analysis, name, 0) or 0) for name in fields}
    # Donated state aliases its output: count those bytes once.
    memory["total_bytes"] = (memory["argument_size_in_bytes"] + memory["output_size_in_bytes"]
                             + memory["temp_size_in_bytes"] - memory["alias_size_in_bytes"])
    memory["device_memory_bytes"] = capacity
    memory["device_kind"] = devices[0].device_kind
    memory["devices"] = len(devices)
    memory["mesh"] = dict(mesh.shape)
    memory["batch_size"] = int(config.train.batch_size)
    memory["per_device_batch"] = config.train.batch_size / (mesh.shape["data"] * mesh.shape["fsdp"])
    fits = None if capacity is None else memory["total_bytes"] <= capacity
    memory["fits"] = False if compiled is None else fits
    _write(os.path.join(out_dir, "memory.json"), json.dumps(memory, indent=2) + "\n")

    cost = _cost(compiled) if compiled is not None else {}
    if compiled is not None and trainer.task.model_config.scan_layers:
        cost["note"] = ("XLA's flops and bytes count the body of a loop once: with scan_layers they cover one "
                        "layer of the stack; model_flops_per_step counts them all")
    cost["model_flops_per_step"] = float(config.train.batch_size * trainer.task.flops_per_example())
    cost["model_flops_per_device"] = cost["model_flops_per_step"] / len(devices)
    cost["compile_seconds"] = seconds
    cost["sharding_constraints"] = stablehlo.count("sharding_constraint")
    _write(os.path.join(out_dir, "cost.json"), json.dumps(cost, indent=2) + "\n")
    return {"memory": memory, "cost": cost}


def fits_line(report: dict) -> str:
    """`fits: yes|no <per-device GiB> of <device GiB>`."""
    memory = report["memory"]
    used = memory["total_bytes"] / 2**30
    capacity = memory["device_memory_bytes"]
    if capacity is None:
        return f"fits: unknown {used:.2f} GiB of unknown"
    return f"fits: {'yes' if memory['fits'] else 'no'} {used:.2f} GiB of {capacity / 2**30:.2f} GiB"
