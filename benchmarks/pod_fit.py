"""Per-chip memory and the largest per-chip batch that fits, from ahead-of-time compilation for TPU slices.

    python benchmarks/pod_fit.py [--configs configs/pretrain/roformer_v2_large.py,...] [--topologies v5e:16x16,...]

For each config, slice and parallelism (FSDP over the whole slice, or data parallelism alone), compiles the real
train step (`rofjax.training.aot`) at a series of per-chip batches, and
prints a markdown table: the per-chip memory at the recipe's batch (512) and the largest power-of-two per-chip
batch that fits (searched from the recipe's per-chip batch by doubling or halving). Needs libtpu (pip install 'rofjax[tpu]'); runs on a CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ["JAX_PLATFORMS"] = "cpu"


def load_config(path: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("pod_fit_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def compile_at(path, devices, mode, per_chip):
    from rofjax.training.aot import compile_train_step

    config = load_config(path)
    config.unlock()
    if mode == "fsdp":
        config.mesh.data, config.mesh.fsdp = 1, -1
    else:
        config.mesh.data, config.mesh.fsdp = -1, 1
    config.train.batch_size = int(per_chip * len(devices))
    with tempfile.TemporaryDirectory() as out:
        return compile_train_step(config, devices, out)["memory"]


def search_largest(path, devices, mode, start, at_start, max_per_chip, label):
    """The largest power-of-two per-chip batch that fits: doubling from the recipe's per-chip batch while it fits,
    halving while it does not (each probe is one compilation)."""
    def report(per_chip, memory):
        print(f"{label} per-chip {per_chip}: {memory['total_bytes'] / 2**30:.2f} GiB fits={memory['fits']}", flush=True)

    per_chip, memory = max(1, start), at_start
    report(per_chip, memory)
    if memory["fits"]:
        while per_chip * 2 <= max_per_chip:
            memory = compile_at(path, devices, mode, per_chip * 2)
            report(per_chip * 2, memory)
            if not memory["fits"]:
                break
            per_chip *= 2
        return per_chip
    while per_chip > 1:
        per_chip //= 2
        memory = compile_at(path, devices, mode, per_chip)
        report(per_chip, memory)
        if memory["fits"]:
            return per_chip
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="configs/pretrain/roformer_v2_large.py,configs/pretrain/gau_alpha_base.py")
    parser.add_argument("--topologies", default="v5e:16x16,v5p:4x4x4")
    parser.add_argument("--modes", default="fsdp,data")
    parser.add_argument("--max-per-chip", type=int, default=64)
    args = parser.parse_args(argv)
    from rofjax.parallel.topology import parse_topology, topology_devices

    for topology in args.topologies.split(","):                  # all named before the first compilation
        try:
            parse_topology(topology)
        except ValueError as error:
            parser.error(str(error))
    rows = []
    for topology in args.topologies.split(","):
        try:
            devices = topology_devices(topology)
        except RuntimeError as error:                            # libtpu (or the CUDA plugin) missing
            parser.error(str(error))
        for path in args.configs.split(","):
            for mode in args.modes.split(","):
                recipe_batch = load_config(path).batch_size
                at_recipe = compile_at(path, devices, mode, recipe_batch / len(devices))
                largest = search_largest(path, devices, mode, recipe_batch // len(devices), at_recipe,
                                         args.max_per_chip, label=f"{topology} {os.path.basename(path)} {mode}")
                rows.append((os.path.basename(path).removesuffix(".py"), topology, len(devices),
                             devices[0].device_kind, mode, recipe_batch, at_recipe["total_bytes"] / 2**30,
                             at_recipe["device_memory_bytes"] / 2**30, largest))
    print("\n| config | slice | chips | parallelism | per-chip GiB at batch 512 | HBM GiB | largest per-chip batch |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, topology, chips, kind, mode, _batch, used, hbm, largest in rows:
        mode_name = "FSDP" if mode == "fsdp" else "data parallel"
        print(f"| {name} | {topology} ({kind}) | {chips} | {mode_name} | {used:.2f} | {hbm:.0f} | "
              f"{largest if largest is not None else 'none fits'} |")


if __name__ == "__main__":
    main()
