"""Training memory and step time of full fine-tuning, regex-frozen fine-tuning and Ladder Side-Tuning, one backbone.

Every method trains the same classification model (a backbone preset, [CLS] → Dense(119), as iflytek) with the
same batch, length and optimiser (the CLUE recipe: AdaFactor, momentum 0.9, unfactored), dropout on:

  full     every parameter trained
  frozen   `optim.param_lr = [("^encoder/(embeddings|transformer)/", 0)]`: the backbone gets no optimizer state,
           but its gradients are still formed (back-propagation runs through every layer)
  su       Ladder Side-Tuning, bojone/LST-CLUE's side network (`--config.lst=su`)
  gated    Ladder Side-Tuning, the paper's gated side network, r = 8 (`--config.lst=gated`)

Per method and length: trainable parameters; peak training memory as XLA's compiled step reserves it (arguments
+ outputs + temporaries − donated aliases, the whole train state included, frozen backbone too); the device's own
peak (`memory_stats()["peak_bytes_in_use"]`, where the backend reports one — GPUs and TPUs, not CPUs; each method
then runs in its own process so peaks do not mix); the median step time over `--steps` steps after one warm-up.
Ratios are against `full` measured in the same run.

    python benchmarks/lst.py                                  # base backbone, 128 and 512 tokens, batch 4 (CPU)
    python benchmarks/lst.py --batch 32 --json out.json --png lst.png
    python benchmarks/lst.py --batch 32 --dtype bfloat16      # on a GPU (bash benchmarks/gpu_check.sh lst)
    python benchmarks/lst.py --preset bert_tiny --lengths 32 --steps 2   # a smoke run
    python benchmarks/lst.py --batch 32 --dtype bfloat16 --methods full --lengths 128 --profile DIR   # a trace
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

METHODS = ("full", "frozen", "su", "gated")
FROZEN_BACKBONE = [(r"^encoder/(embeddings|transformer)/", 0.0)]


def build(method: str, preset: str, length: int, batch: int, dtype: str = "float32"):
    import jax
    from flax import linen as nn

    from rofjax.data.tokenizer import Tokenizer
    from rofjax.data.vocab import EMBEDDED_VOCAB
    from rofjax.models import get_preset
    from rofjax.parallel.mesh import create_mesh
    from rofjax.training.optim import build_optimizer, optim_config
    from rofjax.training.state import Trainer, abstract_params, trained_params
    from rofjax.training.tasks import ClassificationTask

    model_config = get_preset(preset, max_position_embeddings=max(512, length), dtype=dtype)
    lst = dict(lst=method) if method in ("su", "gated") else {}
    if method == "su" and model_config.num_layers < 4:                  # a tiny smoke-test backbone
        lst["side_num_layers"] = model_config.num_layers
    model_config = model_config.replace(**lst)
    task = ClassificationTask(model_config, Tokenizer(EMBEDDED_VOCAB), num_labels=119, max_length=length)
    optim = optim_config()
    optim.name, optim.momentum, optim.min_dim_size_to_factor = "adafactor", 0.9, 10**6
    optim.lr = 5e-3 if model_config.lst != "none" else 5e-4
    optim.decay, optim.weight_decay, optim.clip_norm = "constant", 0.0, 0.0
    if method == "frozen":
        optim.param_lr = FROZEN_BACKBONE
    params = trained_params(task, nn.unbox(abstract_params(task, batch)))
    trainable = sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
    if method == "frozen":
        trainable = sum(int(x.size) for path, x in jax.tree_util.tree_flatten_with_path(params)[0]
                        if not path_is_backbone(path))
    trainer = Trainer(task, build_optimizer(optim, 1000, params=params), create_mesh())
    return task, trainer, trainable


def path_is_backbone(path) -> bool:
    import re

    names = "/".join(str(getattr(k, "key", k)) for k in path)
    return re.search(FROZEN_BACKBONE[0][0], names) is not None


def batch_of(task, batch: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    out = task.init_batch(batch)
    out["input_ids"] = rng.integers(5, 1000, out["input_ids"].shape).astype(np.int32)
    out["labels"] = rng.integers(0, task.num_labels, out["labels"].shape).astype(np.int32)
    return out


def compiled_bytes(compiled) -> int | None:
    try:
        m = compiled.memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                   - m.alias_size_in_bytes)
    except Exception:   # noqa: BLE001 (not every backend reports it)
        return None


def measure(method: str, preset: str, length: int, batch: int, steps: int, dtype: str = "float32",
            profile: str | None = None) -> dict:
    import jax

    task, trainer, trainable = build(method, preset, length, batch, dtype)
    example = batch_of(task, batch)
    abstract_batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in example.items()}
    # One compilation gives both the memory figure and the program that is timed.
    compiled = trainer.lower_train_step(trainer.abstract_state(batch), abstract_batch).compile()
    row = {"method": method, "length": length, "batch": batch, "trainable": trainable,
           "compiled_bytes": compiled_bytes(compiled)}
    times = []
    state = trainer.init_state(0, batch) if steps else None
    for step in range(steps + 1 if steps else 0):
        start = time.perf_counter()
        state, metrics = compiled(state, example)
        jax.block_until_ready(metrics["loss"])
        if step:                                              # the first run warms up
            times.append(time.perf_counter() - start)
    row["step_s"] = statistics.median(times) if times else None
    if profile and state is not None:
        # Three more steps in a device trace (`benchmarks/profile_summary.py DIR --steps 3` reads it).
        jax.profiler.start_trace(profile, create_perfetto_trace=True)
        for _ in range(3):
            state, metrics = compiled(state, example)
        jax.block_until_ready(metrics["loss"])
        jax.profiler.stop_trace()
    stats = jax.devices()[0].memory_stats() or {}
    row["device_peak_bytes"] = stats.get("peak_bytes_in_use")
    row["device"] = jax.devices()[0].device_kind
    return row


def _methods(text: str) -> str:
    unknown = [m for m in text.split(",") if m not in METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown)} not among {', '.join(METHODS)}")
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="roberta_wwm_ext_chinese_base")
    parser.add_argument("--lengths", default="128,512")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3,
                        help="timed steps per method, after one warm-up (0: compiled memory only, nothing run)")
    parser.add_argument("--methods", default=",".join(METHODS), type=_methods,
                        help=f"comma list of {', '.join(METHODS)}")
    parser.add_argument("--dtype", default="float32", help="compute dtype (bfloat16 on an accelerator)")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--png", help="draw the bar chart here (needs matplotlib: pip install 'rofjax[bench]')")
    parser.add_argument("--profile", help="trace three more steps of --profile-run into this folder")
    parser.add_argument("--profile-run", default="full:128", help="method:length of the traced run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)      # method:length, run in this process
    args = parser.parse_args(argv)

    if args.worker:
        method, length = args.worker.split(":")
        profile = args.profile if args.profile and args.worker == args.profile_run else None
        print(json.dumps(measure(method, args.preset, int(length), args.batch, args.steps, args.dtype, profile)),
              flush=True)
        return None

    rows = []
    for length in (int(x) for x in args.lengths.split(",")):
        for method in args.methods.split(","):
            # One process per method: the device's peak memory is per process, and compile caches do not mix.
            command = [sys.executable, os.path.abspath(__file__), "--worker", f"{method}:{length}", "--preset",
                       args.preset, "--batch", str(args.batch), "--steps", str(args.steps), "--dtype", args.dtype,
                       "--profile-run", args.profile_run, *(["--profile", args.profile] if args.profile else [])]
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode:
                # The other rows still count; a missing `full` row leaves its length without ratios.
                print(f"{method} at {length} tokens failed:\n{out.stderr[-3000:]}", file=sys.stderr, flush=True)
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"measured {method} at {length} tokens: {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    if not rows:
        sys.exit("no method could be measured")
    report(rows, args)
    return rows


def report(rows: list[dict], args) -> None:
    def mib(value):
        return f"{value / 2**20:,.0f}" if value else "–"

    def ratio(row, full, key):
        return f"{row[key] / full[key]:.2f}" if row.get(key) and full.get(key) else "–"

    print(f"\n{args.preset}, batch {args.batch}, {args.dtype}, {rows[0]['device']}; "
          "ratios against full fine-tuning, same run\n")
    print("| tokens | method | trainable params | compiled peak MiB | × full | device peak MiB | × full "
          "| step s | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        full = next((r for r in rows if r["length"] == row["length"] and r["method"] == "full"), {})
        speed = f"{full['step_s'] / row['step_s']:.2f}×" if row.get("step_s") and full.get("step_s") else "–"
        print(f"| {row['length']} | {row['method']} | {row['trainable']:,} | {mib(row['compiled_bytes'])} | "
              f"{ratio(row, full, 'compiled_bytes')} | {mib(row['device_peak_bytes'])} | "
              f"{ratio(row, full, 'device_peak_bytes')} | "
              f"{row['step_s'] or 0:.3f} | {speed} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"preset": args.preset, "batch": args.batch, "dtype": args.dtype, "rows": rows}, f, indent=2)
    complete = {(r["method"], r["length"]) for r in rows} == {(m, r["length"]) for m in
                                                              {r["method"] for r in rows} for r in rows}
    if args.png and complete and all(r["method"] != "full" or r.get("compiled_bytes") for r in rows):
        chart(rows, args)
    elif args.png:
        print(f"no chart: some method or length is missing ({args.png} not written)", file=sys.stderr)


def chart(rows: list[dict], args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted({r["length"] for r in rows})
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    width = 0.8 / len(lengths)
    panels = [("compiled_bytes", "peak training memory (× full)")]
    if all(r.get("step_s") for r in rows):
        panels.append(("step_s", "step time (× full)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    axes = axes[0]
    for axis, (key, title) in zip(axes, panels):
        for k, length in enumerate(lengths):
            full = next(r for r in rows if r["length"] == length and r["method"] == "full")
            values = [next(r for r in rows if r["length"] == length and r["method"] == m)[key] / full[key]
                      for m in methods]
            bars = axis.bar([i + k * width for i in range(len(methods))], values, width, label=f"{length} tokens")
            axis.bar_label(bars, fmt="%.2f", fontsize=7)
        axis.set_xticks([i + width * (len(lengths) - 1) / 2 for i in range(len(methods))], methods)
        axis.set_title(title, fontsize=10)
        axis.axhline(1.0, color="grey", linewidth=0.5)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{args.preset}, batch {args.batch}, {rows[0]['device']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)


if __name__ == "__main__":
    main()
