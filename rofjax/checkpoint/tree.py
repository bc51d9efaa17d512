"""Parameter-tree plumbing shared by the converters: flat paths, scanned ↔ per-layer trees, strict matching."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from rofjax.models.config import ModelConfig

LAYER_PATTERN = re.compile(r"^transformer/layer_(\d+)/(.+)$")
SCANNED_PREFIX = "transformer/layers/"


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model: names the first offending tensor, then lists the rest."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, path + "/"))
        else:
            flat[path] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def is_scanned(params: Mapping[str, Any]) -> bool:
    return "layers" in params.get("transformer", {})


def unstack_layers(params: Mapping[str, Any], num_layers: int) -> dict[str, Any]:
    """Scanned tree (`transformer/layers/...` with a leading layer axis) → `transformer/layer_{i}/...`."""
    flat = flatten(params)
    out = {}
    for path, value in flat.items():
        if path.startswith(SCANNED_PREFIX):
            rest = path[len(SCANNED_PREFIX):]
            if np.shape(value)[0] != num_layers:
                raise CheckpointMismatchError(f"Scanned parameter {path} has {np.shape(value)[0]} layers on its "
                                              f"leading axis; the config has num_layers={num_layers}.")
            for index in range(num_layers):
                out[f"transformer/layer_{index}/{rest}"] = value[index]
        else:
            out[path] = value
    return unflatten(out)


def stack_layers(params: Mapping[str, Any], num_layers: int) -> dict[str, Any]:
    """`transformer/layer_{i}/...` → scanned tree with a leading layer axis under `transformer/layers/...`."""
    flat = flatten(params)
    per_layer: dict[str, dict[int, Any]] = {}
    out = {}
    for path, value in flat.items():
        match = LAYER_PATTERN.match(path)
        if match:
            per_layer.setdefault(match.group(2), {})[int(match.group(1))] = value
        else:
            out[path] = value
    for rest, layers in per_layer.items():
        missing = sorted(set(range(num_layers)) - set(layers))
        if missing:
            raise CheckpointMismatchError(f"Cannot stack transformer/layer_*/{rest}: layers {missing} are missing.")
        out[SCANNED_PREFIX + rest] = np.stack([np.asarray(layers[i]) for i in range(num_layers)])
    return unflatten(out)


def expected_shapes(config: ModelConfig, *, with_heads: bool = True) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Flat per-layer paths → (shape, dtype) of every parameter the encoder (and its MLM head and pooler) owns."""
    from rofjax.models.encoder import Encoder

    unscanned = config.replace(scan_layers=False, remat_policy="none")
    model = Encoder(unscanned)
    ids = jnp.ones((1, 4), jnp.int32)

    def init():
        variables = model.init(jax.random.key(0), ids, method=Encoder.masked_lm)
        if with_heads:
            pooled = model.init(jax.random.key(0), jnp.ones((1, 4, unscanned.hidden_size)), method=Encoder.pool)
            variables = {"params": {**variables["params"], **pooled["params"]}}
        return nn.unbox(variables)

    shapes = jax.eval_shape(init)["params"]
    if not with_heads:
        shapes = {k: v for k, v in shapes.items() if k not in ("mlm", "pooler")}
    return {path: (tuple(s.shape), s.dtype) for path, s in flatten(shapes).items()}


OPTIONAL_PREFIXES = ("mlm/", "pooler/")


@dataclasses.dataclass
class ConversionReport:
    """What a conversion used, skipped and repaired, by source tensor name."""

    loaded: dict[str, str] = dataclasses.field(default_factory=dict)      # our path → source name
    unused: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)          # optimizer slots, buffers, NSP head
    notes: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} (optimizer state, derived buffers, NSP head): "
                         f"{', '.join(self.skipped[:5])}{' …' if len(self.skipped) > 5 else ''}")
        if self.unused:
            lines.append(f"UNUSED {len(self.unused)}: {', '.join(self.unused)}")
        lines.extend(self.notes)
        return "; ".join(lines)


def assemble(config: ModelConfig, source: Mapping[str, Any], name_of: Callable[[str], str],
             transform: Callable[[str, np.ndarray], np.ndarray], *, skip: Callable[[str], bool],
             source_label: str, strict: bool = True, report: ConversionReport | None = None):
    """Build our parameter tree from `source` (name → array) through `name_of(our_path)`.

    Every encoder parameter must be present with its exact shape; the MLM head and pooler are taken when all
    their tensors are present. With `strict`, a source tensor that nothing used is an error too.
    """
    report = report or ConversionReport()
    wanted = expected_shapes(config)
    params: dict[str, np.ndarray] = {}
    problems: list[str] = []
    used: set[str] = set()
    groups: dict[str, list[str]] = {}
    for path in wanted:
        group = next((p for p in OPTIONAL_PREFIXES if path.startswith(p)), "")
        groups.setdefault(group, []).append(path)

    for group, paths in groups.items():
        present = [p for p in paths if name_of(p) in source]
        if group and not present:
            continue
        for path in paths:
            name = name_of(path)
            shape, dtype = wanted[path]
            if name not in source:
                problems.append(f"missing tensor {name!r} (for parameter {path}, shape {shape})")
                continue
            value = transform(path, np.asarray(source[name]))
            if tuple(value.shape) != shape:
                problems.append(f"tensor {name!r} has shape {tuple(value.shape)} but parameter {path} needs {shape}")
                continue
            params[path] = value.astype(np.float32 if dtype == jnp.float32 else dtype)
            report.loaded[path] = name
            used.add(name)

    for name in source:
        if name in used:
            continue
        if skip(name):
            report.skipped.append(name)
        else:
            report.unused.append(name)
    if report.unused and strict:
        problems.append(f"{len(report.unused)} source tensor(s) not used by a {config.family} model: "
                        f"{', '.join(sorted(report.unused))}")
    if problems:
        raise CheckpointMismatchError(
            f"{source_label} does not fit a {config.family} model ({config.num_layers} layers, hidden "
            f"{config.hidden_size}): {problems[0]}" + ("" if len(problems) == 1 else
                                                       f"\n(and {len(problems) - 1} more: " + "; ".join(problems[1:]) + ")")
        )
    tree = unflatten(params)
    if config.scan_layers:
        tree = stack_layers(tree, config.num_layers)
    return tree, report


def per_layer_flat(params: Mapping[str, Any], config: ModelConfig) -> dict[str, np.ndarray]:
    """Our params (scanned or not, boxed or not, on device or host) as flat per-layer numpy arrays."""
    params = nn.unbox(params)
    if "params" in params and "embeddings" not in params:
        params = params["params"]
    params = jax.device_get(params)
    if is_scanned(params):
        params = unstack_layers(params, config.num_layers)
    return {path: np.asarray(value) for path, value in flatten(params).items()}


@contextlib.contextmanager
def staged_folder(out_dir, vocab_path=None):
    """Yield a temporary folder beside `out_dir`; on success move its files (and `vocab.txt`) into `out_dir`.

    An export interrupted half-way leaves `out_dir` as it was: no partial checkpoint under the final name.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    parent = os.path.dirname(out_dir) or "."
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".staging-", dir=parent)
    try:
        yield staging
        if vocab_path is not None:
            shutil.copyfile(vocab_path, os.path.join(staging, "vocab.txt"))
        os.makedirs(out_dir, exist_ok=True)
        for name in os.listdir(staging):
            os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
