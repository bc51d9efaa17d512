"""Compile the real train step of a config for a device topology, without the devices.

    python -m train.compile --config configs/pretrain/roformer_v2_large.py --topology v5e:16x16 --out DIR
    python -m train.compile --config configs/pretrain/tiny_mlm.py --topology cpu:8 --out DIR \
        --config.mesh.data=2 --config.mesh.fsdp=2 --config.mesh.tensor=2

Writes DIR/train_step.stablehlo.txt, DIR/train_step.hlo.txt, DIR/memory.json and DIR/cost.json, and prints as
its last line `fits: yes|no <per-device GiB> of <device GiB>`. TPU slices need libtpu (pip install 'rofjax[tpu]').
"""

import logging
import os
import sys


def _topology_from_argv(argv) -> str | None:
    for index, arg in enumerate(argv):
        if arg.startswith("--topology="):
            return arg.split("=", 1)[1]
        if arg == "--topology" and index + 1 < len(argv):
            return argv[index + 1]
    return None


def _prepare(argv) -> None:
    # XLA reads the host device count once, when JAX first starts: set it before anything imports jax.
    from rofjax.parallel.topology import parse_topology, prepare_host_devices

    spec = _topology_from_argv(argv)
    if spec is None:
        return                       # absl reports the missing flag
    try:
        parse_topology(spec)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    prepare_host_devices(spec)


_prepare(sys.argv)

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from train._errors import describe_program, parse_flags, report_user_errors  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "A config file defining get_config(), or a bundled config by name (clue/tnews).", lock_config=True)
flags.DEFINE_string("topology", None, "cpu:N, a TPU slice such as v5e:16x16, v5p:4x4x4, v4:4x4x4, or GPUs such as "
                    "h100, h100:8, h200:2x8.")
flags.DEFINE_string("out", None, "Folder for the compiled step's HLO, memory.json and cost.json.")
flags.mark_flags_as_required(["config", "topology", "out"])


def main(argv):
    del argv
    for name in ("absl", "jax", "orbax", "tensorflow_datasets"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from rofjax.parallel.topology import topology_devices
    from rofjax.training.aot import compile_train_step, fits_line

    try:
        devices = topology_devices(FLAGS.topology)
    except RuntimeError as error:                    # the topology needs an extra: libtpu, the CUDA plugin
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if os.path.exists(FLAGS.out) and not os.path.isdir(FLAGS.out):      # found now, not after the lowering
        print(f"error: --out {FLAGS.out} is a file; give a folder.", file=sys.stderr)
        sys.exit(2)
    config = FLAGS.config
    report = report_user_errors(lambda: compile_train_step(config, devices, FLAGS.out))
    memory, cost = report["memory"], report["cost"]
    gib = lambda n: f"{n / 2**30:.2f} GiB"
    print(f"{config_flags.get_config_filename(FLAGS['config'])}: {memory['devices']} × {memory['device_kind']}, "
          f"mesh {memory['mesh']}, batch {memory['batch_size']} ({memory['per_device_batch']:g} per data shard), "
          f"compiled in {cost['compile_seconds']:.1f} s")
    print(f"per device: arguments {gib(memory['argument_size_in_bytes'])}, outputs "
          f"{gib(memory['output_size_in_bytes'])}, temporaries {gib(memory['temp_size_in_bytes'])}, donated "
          f"{gib(memory['alias_size_in_bytes'])}; model FLOPs per step {cost['model_flops_per_step']:.3e}")
    print(f"wrote {os.path.join(FLAGS.out, 'train_step.stablehlo.txt')} ({cost['sharding_constraints']} sharding "
          f"constraints), train_step.hlo.txt, memory.json, cost.json")
    print(fits_line(report))


if __name__ == "__main__":
    describe_program("Ahead-of-time compilation of a config's train step for a topology: rofjax compile --config "
                     "CONFIG --topology T --out DIR [--config.key=value ...] (also python -m train.compile ...)",
                     ("config", "topology", "out"))
    app.run(main, flags_parser=parse_flags)
