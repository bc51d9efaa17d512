"""The device ops that take the most time in a `jax.profiler` trace (written with `create_perfetto_trace=True`).

    python benchmarks/profile_summary.py TRACE_DIR [--top 25]

Reads the Perfetto JSON trace under TRACE_DIR, keeps complete events on device streams (GPU/TPU threads; on a
CPU-only trace, every thread), groups them by op name and prints total time, share of device time and count.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os


def load_events(trace_dir: str):
    paths = sorted(glob.glob(os.path.join(trace_dir, "**", "*.json.gz"), recursive=True),
                   key=lambda p: (os.path.basename(p) == "perfetto_trace.json.gz", p))
    if not paths:
        raise SystemExit(f"no *.json.gz trace under {trace_dir}")
    with gzip.open(paths[-1], "rt", encoding="utf-8") as f:
        trace = json.load(f)
    return trace["traceEvents"] if isinstance(trace, dict) else trace


def device_op_times(events):
    process_names = {e["pid"]: e["args"].get("name", "") for e in events
                     if e.get("ph") == "M" and e.get("name") == "process_name"}
    device_pids = {pid for pid, name in process_names.items() if "/device:" in name and "CPU" not in name}
    thread_names = {(e["pid"], e["tid"]): e["args"].get("name", "") for e in events
                    if e.get("ph") == "M" and e.get("name") == "thread_name"}
    # On a device, "XLA Ops" holds one event per op; module and step lines would count the same time twice.
    op_threads = {key for key, name in thread_names.items() if key[0] in device_pids and name == "XLA Ops"}
    totals, counts = collections.Counter(), collections.Counter()
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
    return totals, counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace_dir")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    totals, counts = device_op_times(load_events(args.trace_dir))
    whole = sum(totals.values()) or 1.0
    print(f"device time in trace: {whole / 1e3:.1f} ms over {sum(counts.values())} events")
    for name, micros in totals.most_common(args.top):
        print(f"{micros / 1e3:9.2f} ms {micros / whole:6.1%} {counts[name]:6d}x  {name[:110]}")


if __name__ == "__main__":
    main()
