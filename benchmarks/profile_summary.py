"""The device ops that take the most time in a `jax.profiler` trace (written with `create_perfetto_trace=True`).

    python benchmarks/profile_summary.py TRACE_DIR [--top 25] [--steps 3]

Reads the Perfetto JSON trace under TRACE_DIR, keeps complete events on device streams (GPU/TPU threads; on a
CPU-only trace, every thread), groups them by op name and prints total time, share of device time and count, then
the same time by kind of kernel (matrix multiplies, attention, random bits, other fusions, copies), per step when
--steps says how many steps the trace holds.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re

# First match wins: names of cuBLAS / CUTLASS / XLA-Triton GEMMs, cuDNN attention, XLA's fusions by their root.
KINDS = (
    ("attention (cuDNN)", re.compile(r"cudnn|fmha|flash|sdpa|custom-call", re.I)),
    ("matmul", re.compile(r"gemm|nvjet|cutlass|sm90_xmma|sm80_xmma|cublas|triton_gemm|dot", re.I)),
    ("random bits", re.compile(r"rng|xor|threefry|philox", re.I)),
    ("reductions", re.compile(r"reduce", re.I)),
    ("scatter / gather", re.compile(r"scatter|gather|dynamic.slice|dynamic.update", re.I)),
    ("copies / transposes", re.compile(r"copy|transpose|memcpy|memset", re.I)),
    ("other fusions", re.compile(r"fusion|loop|input", re.I)),
)


def kind_of(name: str) -> str:
    return next((kind for kind, pattern in KINDS if pattern.search(name)), "other")


def load_events(trace_dir: str):
    paths = sorted(glob.glob(os.path.join(trace_dir, "**", "*.json.gz"), recursive=True),
                   key=lambda p: (os.path.basename(p) == "perfetto_trace.json.gz", p))
    if not paths:
        raise SystemExit(f"no *.json.gz trace under {trace_dir}")
    with gzip.open(paths[-1], "rt", encoding="utf-8") as f:
        trace = json.load(f)
    return trace["traceEvents"] if isinstance(trace, dict) else trace


def device_op_times(events):
    """(total µs, count, one event's args) per op name on the device's op threads."""
    process_names = {e["pid"]: e["args"].get("name", "") for e in events
                     if e.get("ph") == "M" and e.get("name") == "process_name"}
    device_pids = {pid for pid, name in process_names.items() if "/device:" in name and "CPU" not in name}
    thread_names = {(e["pid"], e["tid"]): e["args"].get("name", "") for e in events
                    if e.get("ph") == "M" and e.get("name") == "thread_name"}
    # On a device, "XLA Ops" holds one event per op; module and step lines would count the same time twice.
    op_threads = {key for key, name in thread_names.items() if key[0] in device_pids and name == "XLA Ops"}
    totals, counts, examples = collections.Counter(), collections.Counter(), {}
    for event in events:
        if event.get("ph") != "X" or "dur" not in event:
            continue
        if device_pids and event.get("pid") not in device_pids:
            continue
        key = (event.get("pid"), event.get("tid"))
        if op_threads and key not in op_threads:
            continue
        if not op_threads and any(word in thread_names.get(key, "") for word in ("Modules", "Steps")):
            continue
        totals[event["name"]] += float(event["dur"])
        counts[event["name"]] += 1
        examples.setdefault(event["name"], event.get("args", {}))
    return totals, counts, examples


def describe(args: dict) -> str:
    """The first 150 characters of an op's HLO where the trace carries it (`long_name`); inside XLA's command
    buffers the trace names only the buffer (`command_buffer_N`)."""
    text = str(args.get("long_name") or args.get("hlo_op") or "")
    return re.sub(r"\s+", " ", text)[:150]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace_dir")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--steps", type=int, default=None, help="steps in the trace, to print times per step")
    parser.add_argument("--describe", type=int, default=0, help="print the HLO of the first N ops")
    args = parser.parse_args(argv)
    totals, counts, examples = device_op_times(load_events(args.trace_dir))
    whole = sum(totals.values()) or 1.0
    per = args.steps or 1
    print(f"device time in trace: {whole / 1e3:.1f} ms over {sum(counts.values())} events"
          + (f", {whole / 1e3 / per:.1f} ms per step" if args.steps else ""))
    kinds = collections.Counter()
    for name, micros in totals.items():
        kinds[kind_of(name)] += micros
    for kind, micros in kinds.most_common():
        print(f"  {kind:22s} {micros / 1e3 / per:8.2f} ms{' per step' if args.steps else ''} {micros / whole:6.1%}")
    for rank, (name, micros) in enumerate(totals.most_common(args.top)):
        print(f"{micros / 1e3:9.2f} ms {micros / whole:6.1%} {counts[name]:6d}x  {kind_of(name)[:12]:12s} {name[:100]}")
        if rank < args.describe and describe(examples[name]):
            print(f"{'':30s}{describe(examples[name])}")


if __name__ == "__main__":
    main()
