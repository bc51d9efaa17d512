# %% [markdown]
# # TPU pods: the mesh, sharded parameters, and what fits per chip
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rofjax/rofjax/blob/main/notebooks/05_tpu_pods.ipynb)
#
# This notebook shows how rofjax lays a training step out over many chips and what that step costs before a pod is
# booked: the `("data", "fsdp", "tensor")` mesh and the logical-axis rules, how each parameter of a small model is
# split, the activation constraints in the lowered train step, ahead-of-time compilation of the real train step for
# a TPU slice (`train.compile`) with its memory per chip, and what `scan_layers` and rematerialisation do to compile
# time and memory. On a Colab TPU runtime the mesh uses the TPU chips; elsewhere JAX simulates 8 CPU devices, which
# is all the first sections need, and compiling for a TPU slice needs libtpu but no TPU. Set `ROFJAX_SMOKE=1` to run
# everything at toy size in seconds (what the tests do).

# %%
# Installs rofjax in a fresh Colab runtime; skipped where it is already importable.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("rofjax") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "rofjax[notebooks] @ git+https://github.com/rofjax/rofjax"], check=True)

# %%
import os

SMOKE = os.environ.get("ROFJAX_SMOKE") == "1"       # toy sizes: the whole notebook in seconds
WORK = os.environ.get("ROFJAX_WORK", "runs")        # where the compiled steps and their reports go

# XLA reads the number of host devices once, when JAX starts, so it is asked for before jax is first imported. On a
# TPU runtime the chips stay JAX's default devices and the 8 host devices sit beside them (for `cpu:8` below).
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    flags += " --xla_force_host_platform_device_count=8"
if SMOKE and "xla_backend_optimization_level" not in flags:
    # A smoke run only checks that every cell runs; LLVM's optimisation is most of a tiny compile's time.
    flags += " --xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = flags.strip()

import contextlib
import math
import time

import jax
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML, display

import rofjax


def numeric(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool)


def table(header, rows):
    """Rows as an HTML table (numbers right-aligned)."""
    def cell(value, tag):
        align = ' style="text-align:right"' if tag == "td" and numeric(value) else ""
        return f"<{tag}{align}>{value}</{tag}>"
    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    return HTML(f"<table><tr>{head}</tr>{body}</table>")


print(f"rofjax {rofjax.__version__}, jax {jax.__version__} on {jax.devices()[0].platform}" + (" (smoke)" if SMOKE else ""))

# %% [markdown]
# ## 1. Devices
#
# With a TPU of 8 devices or a multiple of 8 attached, the mesh below is made of its chips. Otherwise (no TPU, or a
# single-chip runtime, too small for a `fsdp=4 × tensor=2` mesh) it is made of 8 host devices that XLA simulates on
# the CPU: the same sharded program, partitioned and run the same way, only slower. Whether libtpu is installed
# decides whether section 4 can compile for a TPU slice as well.

# %%
HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None
attached = jax.devices()
if attached[0].platform == "tpu" and len(attached) % 8 == 0:
    DEVICES = attached
    print(f"mesh devices: {len(DEVICES)} × {DEVICES[0].device_kind} (attached)")
else:
    DEVICES = jax.devices("cpu")[:8]
    why = "no TPU attached" if attached[0].platform != "tpu" else f"the TPU has {len(attached)}, not a multiple of 8"
    print(f"mesh devices: {len(DEVICES)} simulated CPU devices ({why})")
print("libtpu:", "installed" if HAS_LIBTPU else "not installed (pip install 'rofjax[tpu]' to compile for TPU slices)")

# %% [markdown]
# ## 2. The mesh and the logical-axis rules
#
# Every rofjax mesh has three axes: `data` (plain data parallelism: each slice holds a whole copy of the state),
# `fsdp` (the batch is split over it too, and so is the embedding axis of every weight: ZeRO-3) and `tensor`
# (Megatron-style: attention heads, the feed-forward width and the vocabulary are split). A config sets the sizes
# with `mesh.data`, `mesh.fsdp` and `mesh.tensor` (one of them −1: the devices left over). Modules name the axes of
# their parameters and activations logically (`embed`, `heads`, …); the rules map each logical name to mesh axes,
# and a config may replace them with `mesh.logical_axis_rules`. Below: `fsdp=4, tensor=2` on these devices, the
# rules in force, and which device sits where in the mesh.

# %%
from configs.pretrain import tiny_mlm
from rofjax.parallel.mesh import MESH_AXES, create_mesh, rules_from_config

config = tiny_mlm.get_config()
config.unlock()
config.mesh.data, config.mesh.fsdp, config.mesh.tensor = -1, 4, 2
mesh = create_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor, devices=DEVICES)
rules = rules_from_config(config)           # mesh.logical_axis_rules is empty: the library's defaults


def axes_of(target):
    return () if target is None else target if isinstance(target, tuple) else (target,)


display(table(["mesh axis", "size", "logical axes split over it"],
              [(axis, mesh.shape[axis], ", ".join(name for name, target in rules if axis in axes_of(target)) or "—")
               for axis in MESH_AXES]))
display(table(["logical axis", "mesh axes", "ways split on this mesh"],
              [(name, " × ".join(axes_of(target)) or "replicated",
                math.prod(mesh.shape[a] for a in axes_of(target))) for name, target in rules]))
for index, grid in enumerate(mesh.device_ids):
    print(f"data slice {index}: device ids, rows fsdp 0–{grid.shape[0] - 1}, columns tensor 0–{grid.shape[1] - 1}")
    print("\n".join("   " + " ".join(f"{d:3d}" for d in row) for row in grid))

# %% [markdown]
# ## 3. How the parameters are split
#
# `rofjax.training.aot.build_trainer` builds the `Trainer` a config trains with (task, optimizer, mesh, rules) from
# shapes alone, as `train.compile` does. The model here is `configs/pretrain/tiny_mlm.py` (a 2-layer, 128-wide
# RoFormerV2 with a masked-LM head) with `scan_layers=True`, so its layers are stacked under a leading `layers`
# axis. Each parameter's logical axes come from its module; the rules turn them into a `PartitionSpec` of mesh axes,
# and the bytes per device follow from the shard's shape. A dimension that a mesh axis does not divide is replicated
# instead (with a warning). The optimizer's moments are split exactly like their parameters.

# %%
from flax import linen as nn
from jax.sharding import PartitionSpec

from rofjax.parallel.mesh import batch_sharding
from rofjax.training.aot import build_trainer

config.model.scan_layers = True
config.data.max_length = 32 if SMOKE else 128
config.train.batch_size = (2 if SMOKE else 8) * mesh.shape["data"] * mesh.shape["fsdp"]
trainer = build_trainer(config, DEVICES)
with trainer.context():
    boxed = trainer.abstract_params(config.train.batch_size)
state = trainer.abstract_state(config.train.batch_size)
is_spec = lambda x: isinstance(x, PartitionSpec)
path_name = lambda path: "/".join(str(getattr(key, "key", key)) for key in path)
logical = {path_name(path): spec
           for path, spec in jax.tree_util.tree_leaves_with_path(nn.get_partition_spec(boxed), is_leaf=is_spec)}


def device_bytes(leaf):
    return math.prod(leaf.sharding.shard_shape(leaf.shape)) * leaf.dtype.itemsize


def whole_bytes(leaf):
    return math.prod(leaf.shape) * leaf.dtype.itemsize


def spec_text(spec, ndim):
    parts = tuple(spec) + (None,) * (ndim - len(spec))
    return "(" + ", ".join("·" if p is None else "×".join(axes_of(p)) for p in parts) + ")"


rows = []
for path, leaf in jax.tree_util.tree_leaves_with_path(state.params):
    name = path_name(path)
    rows.append((name, "×".join(map(str, leaf.shape)), spec_text(logical[name], leaf.ndim),
                 spec_text(leaf.sharding.spec, leaf.ndim), "×".join(map(str, leaf.sharding.shard_shape(leaf.shape))),
                 f"{device_bytes(leaf) / 1024:.1f}", f"1/{whole_bytes(leaf) // device_bytes(leaf)}"))
display(table(["parameter", "shape", "logical axes", "mesh axes", "shard", "KiB per device", "share"], rows))


def state_bytes(tree):
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(tree) if leaf.ndim]   # counters are replicated scalars
    return sum(map(whole_bytes, leaves)), sum(map(device_bytes, leaves))


MiB = 2**20
params_all, params_device = state_bytes(state.params)
opt_all, opt_device = state_bytes(state.opt_state)
print(f"parameters: {params_all / MiB:.2f} MiB, {params_device / MiB:.3f} MiB per device; "
      f"optimizer state: {opt_all / MiB:.2f} MiB, {opt_device / MiB:.3f} MiB per device")

# %% [markdown]
# The same model under other rules, set through `mesh.logical_axis_rules`: the first set maps `embed` to no mesh
# axis, which leaves tensor parallelism alone (each device holds its share of the heads, the feed-forward width and
# the vocabulary, whole along the embedding axis); the second maps everything but `batch` to none, so that every
# device keeps a whole copy, as plain data parallelism does. What each device then holds of the parameters and the
# optimizer state:

# %%
rule_variants = {
    "the defaults (FSDP × tensor)": [],
    "embed → none (tensor only)": [[n, None if n == "embed" else list(axes_of(t)) or None] for n, t in rules],
    "only batch split (data parallel)": [[n, list(axes_of(t)) if n == "batch" else None] for n, t in rules],
}
rows = []
for label, rule_list in rule_variants.items():
    variant = config.copy_and_resolve_references()
    variant.mesh.logical_axis_rules = rule_list
    variant_state = build_trainer(variant, DEVICES).abstract_state(config.train.batch_size)
    (p_all, p_dev), (o_all, o_dev) = state_bytes(variant_state.params), state_bytes(variant_state.opt_state)
    rows.append((label, f"{p_dev / MiB:.3f}", f"{o_dev / MiB:.3f}", f"{(p_dev + o_dev) / (p_all + o_all):.3f}"))
display(table(["rules", "parameters, MiB per device", "optimizer state, MiB per device", "share of the whole"],
              rows))

# %% [markdown]
# Activations are constrained too: the modules call `nn.with_logical_constraint` on their outputs (embeddings, the
# q/k/v projections, the feed-forward hidden layer, each block's output, the masked-LM logits), and those
# constraints bind because the `Trainer` lowers its step under the mesh and the rules. Counting them in the lowered
# train step (as `tests/parallel/test_sharding.py` does), grouped by how each dimension is split and by the shape
# they constrain, for the scanned model and the same model unrolled (one copy per layer):

# %%
import re


def step_inputs(cfg):
    """The trainer of `cfg`, and its state and batch as shape structs with their shardings."""
    step_trainer = build_trainer(cfg, DEVICES)
    step_state = step_trainer.abstract_state(cfg.train.batch_size)
    batch = {key: jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=batch_sharding(step_trainer.mesh, value.ndim))
             for key, value in step_trainer.task.init_batch(cfg.train.batch_size).items()}
    return step_trainer, step_state, batch


def lowered_step(cfg):
    step_trainer, step_state, batch = step_inputs(cfg)
    return step_trainer.lower_train_step(step_state, batch)


CONSTRAINT = re.compile(r"sharding_constraint.*<@\w+, \[(.*)\]>\s*:\s*tensor<([^>]*)>")


def constraints(lowered):
    counts = {}
    for line in lowered.as_text().splitlines():
        if "sharding_constraint" not in line:
            continue
        match = CONSTRAINT.search(line)
        if match:
            dims = re.findall(r"\{([^}]*)\}", match.group(1))
            split = "(" + ", ".join("×".join(re.findall(r'"(\w+)"', d)) or "·" for d in dims) + ")"
            *shape, dtype = match.group(2).split("x")
            key = (split, "×".join(shape) + " " + dtype)
        else:
            key = ("(other form)", line.strip()[:60])
        counts[key] = counts.get(key, 0) + 1
    return counts


unrolled = config.copy_and_resolve_references()
unrolled.model.scan_layers = False
scanned_counts, unrolled_counts = constraints(lowered_step(config)), constraints(lowered_step(unrolled))
keys = sorted(set(scanned_counts) | set(unrolled_counts))
display(table(["dimensions split over", "shape", "scanned step", "unrolled step"],
              [(*key, scanned_counts.get(key, 0), unrolled_counts.get(key, 0)) for key in keys]
              + [("all", "", sum(scanned_counts.values()), sum(unrolled_counts.values()))]))

# %% [markdown]
# ## 4. Compiling the train step for a pod, without the pod
#
# `train.compile` lowers the real train step of a config on abstract state and batch (shapes and shardings only),
# compiles it for a topology that need not be attached, and reports what one device needs:
#
# ```bash
# python -m train.compile --config configs/pretrain/roformer_v2_large.py --topology v5e:16x16 --out aot/large
# python -m train.compile --config configs/pretrain/tiny_mlm.py --topology cpu:8 --out aot/tiny \
#     --config.mesh.data=2 --config.mesh.fsdp=2 --config.mesh.tensor=2
# ```
#
# It writes `train_step.stablehlo.txt`, `train_step.hlo.txt`, `memory.json` and `cost.json` to `--out` and ends
# with `fits: yes|no <GiB per device> of <device GiB>`. The cells below call the function it runs,
# `rofjax.training.aot.compile_train_step`, in this process. Per-device memory is arguments + outputs +
# temporaries − donated (the state is donated to the step, so its outputs reuse the arguments' buffers). `cpu:8`
# always compiles (the host devices above). A TPU slice such as `v5e:16x16` (256 v5e chips) needs libtpu, which
# describes the chips and compiles for them; it needs no TPU, and JAX itself may stay on the CPU
# (`JAX_PLATFORMS=cpu`). What XLA writes to the process's error stream while compiling (libtpu's start-up warnings
# about TPU hosts it cannot find, the partitioner's warnings) goes to a log beside the reports, and the cell says
# what it held. First `cpu:8`, with the tiny pre-training config on `data=2, fsdp=2, tensor=2`:

# %%
import json

from configs.pretrain import roformer_v2_large
from rofjax.parallel.topology import topology_devices
from rofjax.training.aot import compile_train_step, fits_line

GiB = 2**30
AOT = os.path.join(WORK, "05_aot")
reports = []


@contextlib.contextmanager
def stderr_to(path, mode="wb"):
    """File descriptor 2, where XLA and libtpu log, into `path` for the duration."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, mode) as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def partitioner_warnings(log_path):
    """XLA's SPMD partitioner warnings in a log: how many, and the operations they name."""
    with open(log_path, encoding="utf-8", errors="replace") as f:
        lines = [line for line in f if "spmd_partitioner" in line and "rematerialization" in line]
    ops = sorted({m.group(1).split("/", 1)[-1] for line in lines for m in [re.search(r'op_name="([^"]+)"', line)] if m})
    return len(lines), ops


def compile_for(cfg, topology, devices, label):
    out = os.path.join(AOT, label)
    log_path = os.path.join(AOT, f"{label}.log")
    with stderr_to(log_path):
        report = compile_train_step(cfg, devices, out)
    memory, cost = report["memory"], report["cost"]
    reports.append({"label": label, "topology": topology, **memory, "compile_seconds": cost["compile_seconds"]})
    print(f"{label}: {memory['devices']} × {memory['device_kind']}, mesh {memory['mesh']}, batch "
          f"{memory['batch_size']} ({memory['per_device_batch']:g} per data shard), compiled in "
          f"{cost['compile_seconds']:.1f} s; {cost['sharding_constraints']} sharding constraints")
    print(f"  wrote {os.path.relpath(out)}: {', '.join(sorted(os.listdir(out)))}")
    if "compiler_error" in memory:
        print(f"  the compiler refused it: {memory['compiler_error']}")
    count, ops = partitioner_warnings(log_path)
    if count:
        print(f"  XLA's SPMD partitioner: {count} × 'involuntary full rematerialization' (a tensor replicated to be "
              f"resharded) at {'; '.join(ops) or 'unnamed operations'} (log: {os.path.relpath(log_path)})")
    print(f"  {fits_line(report)}")
    return report


cpu_config = tiny_mlm.get_config()
cpu_config.unlock()
cpu_config.mesh.data, cpu_config.mesh.fsdp, cpu_config.mesh.tensor = 2, 2, 2
if SMOKE:
    cpu_config.model.update(num_layers=1, hidden_size=32, intermediate_size=64, vocab_size=256,
                            dropout_rate=0.0, attention_dropout_rate=0.0)
    cpu_config.data.max_length, cpu_config.train.batch_size = 16, 8
compile_for(cpu_config, "cpu:8", topology_devices("cpu:8"), "tiny_mlm-cpu8")
with open(os.path.join(AOT, "tiny_mlm-cpu8", "memory.json"), encoding="utf-8") as f:
    print("  memory.json:", json.dumps({k: v for k, v in json.load(f).items() if k.endswith("bytes")}))

# %% [markdown]
# On `cpu:N` the "device memory" is the host's memory shared out among the N simulated devices, so `fits` says
# little there; on a TPU slice it is the chip's HBM. The partitioner's warning above (when there is one) is about the
# word-embedding lookup on a mesh with both `data` and `fsdp` larger than one: the lookup's result comes out split
# like the table's embedding axis, and XLA gathers it whole before splitting it by batch; on the `data=1` meshes of
# the other compilations here it does not warn.
#
# Next the published RoFormerV2-large recipe (`configs/pretrain/roformer_v2_large.py`: 24 layers, hidden 1024, bf16
# compute with fp32 parameters, LAMB, batch 512 × 512 tokens, scanned layers, FSDP over the whole slice;
# `configs/pretrain/gau_alpha_base.py` is the other published recipe) on a v5e-256, at the recipe's batch (2 per
# chip) and at 16 per chip. Compiling the large model for the slice is the slow part of this notebook (each line
# below gives its time), so the TPU compilations are left out at smoke size. A step the chip cannot hold is refused
# by the compiler (`RESOURCE_EXHAUSTED`, and quickly); `compile_train_step` then records the memory the compiler
# said it needed.

# %%
TPU_TOPOLOGY = "v5e:16x16"
TPU_PER_CHIP = (2, 16)


def compile_large(per_chip):
    large = roformer_v2_large.get_config()
    large.unlock()
    large.train.batch_size = per_chip * len(tpu_devices)
    return compile_for(large, TPU_TOPOLOGY, tpu_devices, f"roformer_v2_large-{per_chip}-per-chip")


tpu_reports = []
if SMOKE:
    print(f"smoke size: {TPU_TOPOLOGY} left out")
elif not HAS_LIBTPU:
    print(f"libtpu is not installed: {TPU_TOPOLOGY} left out, cpu:8 only (pip install 'rofjax[tpu]', no TPU needed)")
else:
    libtpu_log = os.path.join(AOT, "libtpu.log")
    with stderr_to(libtpu_log):
        tpu_devices = topology_devices(TPU_TOPOLOGY)
    print(f"{TPU_TOPOLOGY}: {len(tpu_devices)} × {tpu_devices[0].device_kind}, described by libtpu (its start-up "
          f"log: {os.path.relpath(libtpu_log)}); JAX's own devices here: {jax.devices()[0].platform}")
    tpu_reports = [compile_large(per_chip) for per_chip in TPU_PER_CHIP]

# %% [markdown]
# The largest per-chip batch that fits. `benchmarks/pod_fit.py` answers it by compiling: it doubles the per-chip
# batch from the recipe's while the compiler accepts the step (halving while it does not), one compilation per
# probe. Fewer suffice: the state's share of a chip does not grow with the batch
# and the activations grow in proportion to it, so the two compilations above put a line through the per-chip
# totals, and the largest power of two that the line keeps under the chip's memory is the one to compile next.
# Below, the line, that compilation, and the answer.

# %%
if len(tpu_reports) >= 2:
    def compiled_points():
        return {r["memory"]["per_device_batch"]: r["memory"] for r in tpu_reports}

    points = compiled_points()
    slope, intercept = np.polyfit(list(points), [m["total_bytes"] / GiB for m in points.values()], 1)
    hbm = tpu_reports[0]["memory"]["device_memory_bytes"] / GiB
    candidates = [2**k for k in range(6)]
    under = [b for b in candidates if intercept + slope * b <= hbm]
    print(f"the line through per-chip batches {sorted(map(int, points))}: {intercept:.2f} GiB + {slope:.2f} GiB "
          f"per example; the largest power of two it keeps under {hbm:.0f} GiB: {max(under) if under else 'none'}")
    if under and max(under) not in points:
        tpu_reports.append(compile_large(max(under)))
    points = compiled_points()
    display(table(["per-chip batch", "the line, GiB per chip", "compiled, GiB per chip", "fits"],
                  [(b, f"{intercept + slope * b:.2f}",
                    (f"{points[b]['total_bytes'] / GiB:.2f}" + ("" if points[b]["fits"] else " (refused)"))
                    if b in points else "—",
                    ("yes" if points[b]["fits"] else "no") if b in points else "")
                   for b in candidates]))
    fits = [b for b, m in points.items() if m["fits"]]
    refused = [b for b, m in points.items() if not m["fits"]]
    if fits:
        largest = int(max(fits))
        print(f"the largest power-of-two per-chip batch that fits: {largest}, batch {largest * len(tpu_devices)} "
              f"on the slice" + (f" ({2 * largest} per chip was refused)" if 2 * largest in refused else ""))
else:
    print("no TPU slice was compiled, so there is no line to draw (it takes two compilations of one slice)")

# %% [markdown]
# What each device holds in every compilation of this section, split into the step's arguments (the sharded state
# and the batch), the outputs that do not reuse a donated argument, and the temporaries (activations kept for the
# backward pass, gradients, the optimizer's work), against the device's memory; a refused step shows what the
# compiler said it needed:

# %%
groups = [[r for r in reports if r["topology"] == "cpu:8"],
          sorted((r for r in reports if r["topology"] != "cpu:8"), key=lambda r: r["per_device_batch"])]
groups = [group for group in groups if group]
ratios = [max(2, len(group)) for group in groups]
fig, axes = plt.subplots(1, len(groups), figsize=(2.3 * sum(ratios), 3.8), squeeze=False,
                         gridspec_kw={"width_ratios": ratios})
for ax, group in zip(axes[0], groups):
    unit, scale = ("MiB", MiB) if group[0]["topology"] == "cpu:8" else ("GiB", GiB)
    labels = [f"batch {r['batch_size']}\n{r['per_device_batch']:g} per data shard"
              + ("" if r["fits"] is not False else "\nrefused") for r in group]
    bottom = np.zeros(len(group))
    for part, colour, value in (
            ("arguments", "tab:blue", lambda r: r["argument_size_in_bytes"]),
            ("outputs not donated", "tab:orange", lambda r: r["output_size_in_bytes"] - r["alias_size_in_bytes"]),
            ("temporaries", "tab:green", lambda r: r["temp_size_in_bytes"])):
        values = np.array([value(r) / scale for r in group])
        ax.bar(labels, values, bottom=bottom, label=part, color=colour, width=0.5)
        bottom += values
    capacity = group[0]["device_memory_bytes"]
    if capacity and capacity / scale < 3 * bottom.max():     # the host's share of a CPU would flatten the bars
        ax.axhline(capacity / scale, color="tab:red", ls="--", label=f"device memory, {capacity / scale:.0f} {unit}")
    ax.set_ylabel(f"{unit} per device")
    ax.set_title(f"{group[0]['label'].split('-')[0]} on {group[0]['topology']} ({group[0]['device_kind']})",
                 fontsize=10)
    ax.legend(fontsize=7)
fig.tight_layout()
plt.show()

display(table(["config", "topology", "batch", "per shard", "arguments", "outputs", "temporaries", "donated",
               "total", "device memory", "fits", "compile s"],
              [(r["label"].split("-")[0], r["topology"], r["batch_size"], f"{r['per_device_batch']:g}",
                *(f"{r[k] / GiB:.3f}" for k in ("argument_size_in_bytes", "output_size_in_bytes",
                                                "temp_size_in_bytes", "alias_size_in_bytes", "total_bytes")),
                f"{r['device_memory_bytes'] / GiB:.1f}", {True: "yes", False: "no"}.get(r["fits"], "unknown"),
                f"{r['compile_seconds']:.1f}")
               for group in groups for r in group]))
print("memory columns in GiB per device")

# %% [markdown]
# ## 5. `scan_layers`, rematerialisation, compile time and memory
#
# Two model keys trade compile time, step time and memory. `model.scan_layers=True` runs the layers under `nn.scan`:
# XLA compiles one layer body and loops over stacked parameters, so compile time stays flat as the model deepens
# (what a pod compile needs), while the unrolled stack compiles every layer. `model.remat_policy` recomputes the
# forward pass inside each layer during the backward pass instead of keeping its activations: `full` keeps nothing
# but the layer's input, `dots` keeps the results of matrix multiplications, `dots_with_no_batch_dims` only those
# without a batch dimension (the weight matmuls, not attention's), and `none` keeps everything. Below, the train
# step of the tiny model on the `fsdp=4, tensor=2` mesh of section 2, compiled at several depths with and without
# scan, then at the deepest with each policy. The times are this process's CPU seconds (the compiler's work,
# whatever else the machine runs), tracing and lowering apart from XLA's compilation.

# %%
DEPTHS = (1,) if SMOKE else (2, 8, 24)
POLICIES = ("none", "full") if SMOKE else ("none", "full", "dots", "dots_with_no_batch_dims")
VARIANTS_LOG = os.path.join(AOT, "variants.log")
open(VARIANTS_LOG, "w").close()


def compile_variant(layers, scan, policy):
    cfg = config.copy_and_resolve_references()
    cfg.model.update(num_layers=layers, scan_layers=scan, remat_policy=policy)
    if SMOKE:
        cfg.model.update(hidden_size=32, intermediate_size=64, vocab_size=256, dropout_rate=0.0,
                         attention_dropout_rate=0.0)
        cfg.data.max_length = 16
    step_trainer, step_state, batch = step_inputs(cfg)
    start = time.process_time()
    with stderr_to(VARIANTS_LOG, "ab"):
        lowered = step_trainer.lower_train_step(step_state, batch)
        lowered_at = time.process_time()
        compiled = lowered.compile()
    done = time.process_time()
    return {"layers": layers, "scan": scan, "policy": policy, "lower": lowered_at - start,
            "compile": done - lowered_at, "temp": compiled.memory_analysis().temp_size_in_bytes}


variants = [compile_variant(layers, scan, "none") for scan in (True, False) for layers in DEPTHS]
variants += [compile_variant(DEPTHS[-1], True, policy) for policy in POLICIES if policy != "none"]

fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
for scan, colour in ((True, "tab:blue"), (False, "tab:orange")):
    rows = [v for v in variants if v["scan"] == scan and v["policy"] == "none"]
    depth = [v["layers"] for v in rows]
    time_ax.plot(depth, [v["lower"] + v["compile"] for v in rows], "o-", color=colour,
                 label=f"scan_layers={scan}: trace + lower + compile")
    time_ax.plot(depth, [v["compile"] for v in rows], "o:", color=colour, label=f"scan_layers={scan}: compile")
time_ax.set_xlabel("layers")
time_ax.set_ylabel("CPU seconds")
time_ax.set_xticks(DEPTHS)
time_ax.set_ylim(bottom=0)
time_ax.set_title("compiling the train step", fontsize=10)
time_ax.legend(fontsize=7)
deepest = [v for v in variants if v["scan"] and v["layers"] == DEPTHS[-1]]
memory_ax.bar([v["policy"] for v in deepest], [v["temp"] / MiB for v in deepest], color="tab:green", width=0.5)
memory_ax.set_ylabel("temporaries, MiB per device")
memory_ax.set_title(f"remat_policy, {DEPTHS[-1]} scanned layers", fontsize=10)
memory_ax.tick_params(axis="x", labelsize=8)
fig.tight_layout()
plt.show()

display(table(["layers", "scan_layers", "remat_policy", "trace + lower, CPU s", "compile, CPU s",
               "temporaries, MiB per device"],
              [(v["layers"], str(v["scan"]), v["policy"], f"{v['lower']:.2f}", f"{v['compile']:.2f}",
                f"{v['temp'] / MiB:.2f}") for v in variants]))
count, ops = partitioner_warnings(VARIANTS_LOG)
print(f"XLA's SPMD partitioner warnings while compiling these: {count}")
