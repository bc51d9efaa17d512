"""Device mesh, logical axis rules and shardings (MaxText/t5x style).

Mesh axes are `("data", "fsdp", "tensor")`; one size may be −1 (the rest of the devices). Logical names on
parameters and activations map to mesh axes through `LOGICAL_RULES`:

    batch → (data, fsdp)   embed → fsdp   vocab, heads, mlp → tensor   length, kv, layers → replicated

so `fsdp > 1` shards every weight matrix's embedding axis (ZeRO-3 style), and `tensor > 1` splits heads, the MLP
and the vocabulary (Megatron style). A dimension a mesh axis does not divide is replicated instead, with a warning.

The activation constraints in the modules (`nn.with_logical_constraint`) bind only while a mesh and the rules are
in force; `sharding_context(mesh, rules)` sets both, and the `Trainer` traces every step inside it. A config may
replace the rules with `mesh.logical_axis_rules` (a list of `[logical name, mesh axis | [axes] | None]`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
LOGICAL_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("kv", None),
    ("layers", None),
)
log = logging.getLogger(__name__)


def mesh_shape(data: int = -1, fsdp: int = 1, tensor: int = 1, num_devices: int | None = None) -> tuple[int, ...]:
    """Resolve the one −1 entry against the device count; every size must divide it exactly."""
    num_devices = num_devices or jax.device_count()
    sizes = [data, fsdp, tensor]
    unknown = [i for i, s in enumerate(sizes) if s == -1]
    if len(unknown) > 1:
        raise ValueError(f"Mesh sizes data={data}, fsdp={fsdp}, tensor={tensor}: at most one may be -1.")
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"Mesh sizes must be positive or -1; got data={data}, fsdp={fsdp}, tensor={tensor}.")
    known = math.prod(s for s in sizes if s != -1)
    if unknown:
        if num_devices % known:
            raise ValueError(f"{num_devices} devices cannot be split into data={data}, fsdp={fsdp}, "
                             f"tensor={tensor}.")
        sizes[unknown[0]] = num_devices // known
    if math.prod(sizes) != num_devices:
        raise ValueError(f"Mesh data={sizes[0]} × fsdp={sizes[1]} × tensor={sizes[2]} = {math.prod(sizes)} but "
                         f"{num_devices} devices are present.")
    return tuple(sizes)


def create_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence | None = None) -> Mesh:
    devices = list(devices if devices is not None else jax.devices())
    shape = mesh_shape(data, fsdp, tensor, len(devices))
    grid = None
    if len(devices) > 1 and (devices == list(jax.devices()) or devices[0].platform == "tpu"):
        from jax.experimental import mesh_utils

        try:   # the ICI-aware layout (TPU slices, local GPUs)
            grid = mesh_utils.create_device_mesh(shape, devices=devices)
        except (ValueError, NotImplementedError, AssertionError) as error:
            log.warning("no topology-aware layout for mesh %s (%s); using device order", shape, error)
    if grid is None:
        grid = np.array(devices).reshape(shape)
    return Mesh(grid, MESH_AXES)


def mesh_from_config(cfg) -> Mesh:
    """`cfg.mesh` = {data, fsdp, tensor, multihost}; `multihost` calls `jax.distributed.initialize()` first."""
    mesh_cfg = cfg.get("mesh", None) or {}
    if mesh_cfg.get("multihost", False) and jax.process_count() == 1:
        jax.distributed.initialize()
    return create_mesh(mesh_cfg.get("data", -1), mesh_cfg.get("fsdp", 1), mesh_cfg.get("tensor", 1))


def rules_from_config(cfg) -> tuple[tuple[str, str | tuple[str, ...] | None], ...]:
    """`cfg.mesh.logical_axis_rules` as a rules tuple (the defaults when absent or empty), checked."""
    mesh_cfg = cfg.get("mesh", None) or {}
    raw = mesh_cfg.get("logical_axis_rules", None) if hasattr(mesh_cfg, "get") else None
    if not raw:
        return LOGICAL_RULES
    rules = []
    for index, rule in enumerate(raw):
        if not isinstance(rule, (list, tuple)) or len(rule) != 2 or not isinstance(rule[0], str):
            raise ValueError(f"config.mesh.logical_axis_rules[{index}]={rule!r}: expected [logical name, mesh axis, "
                             f"list of mesh axes, or None].")
        name, axes = rule
        axes = tuple(axes) if isinstance(axes, (list, tuple)) else axes
        for axis in axes if isinstance(axes, tuple) else (axes,):
            if axis is not None and axis not in MESH_AXES:
                raise ValueError(f"config.mesh.logical_axis_rules[{index}]: mesh axis {axis!r} for {name!r} is not "
                                 f"one of {MESH_AXES}.")
        rules.append((name, axes))
    return tuple(rules)


@contextlib.contextmanager
def sharding_context(mesh: Mesh, rules=LOGICAL_RULES):
    """Mesh and logical-axis rules in force, so that activation constraints bind when a step is traced."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def _fit(spec: PartitionSpec, shape: Sequence[int], mesh: Mesh, name: str) -> PartitionSpec:
    """Drop mesh axes from dimensions they do not divide (tiny vocabularies, odd head counts)."""
    fitted = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        if axes is None:
            fitted.append(None)
            continue
        names = axes if isinstance(axes, tuple) else (axes,)
        size = math.prod(mesh.shape[a] for a in names)
        if dim % size:
            log.warning("replicating dimension of size %d of %s: mesh axes %s (size %d) do not divide it",
                        dim, name, names, size)
            fitted.append(None)
        else:
            fitted.append(axes)
    return PartitionSpec(*fitted)


def logical_shardings(boxed_tree, mesh: Mesh, rules=LOGICAL_RULES):
    """NamedShardings for a tree whose leaves may be `nn.Partitioned` (logical names) or plain arrays."""
    specs = nn.get_partition_spec(boxed_tree)
    mesh_specs = nn.logical_to_mesh(specs, rules)
    shapes = jax.tree_util.tree_map(lambda x: tuple(np.shape(x)), nn.unbox(boxed_tree))
    flat_specs, treedef = jax.tree_util.tree_flatten(mesh_specs, is_leaf=lambda x: isinstance(x, PartitionSpec))
    flat_shapes = treedef.flatten_up_to(shapes)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(
        mesh_specs, is_leaf=lambda x: isinstance(x, PartitionSpec))[0]]
    fitted = [NamedSharding(mesh, _fit(spec, shape, mesh, path))
              for spec, shape, path in zip(flat_specs, flat_shapes, paths)]
    return jax.tree_util.tree_unflatten(treedef, fitted)


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Leading (batch) axis over data × fsdp, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp"), *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Assemble each host's slice of the batch into global arrays sharded over data × fsdp."""
    return {key: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(value)), np.asarray(value))
            for key, value in local_batch.items()}
