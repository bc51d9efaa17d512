"""Memory traffic of a compiled step, read from its optimised HLO: what each kind of kernel reads and writes.

    python -m train.compile --config CONFIG --topology h100 --out aot/now [--config.x=y ...]
    python benchmarks/hlo_traffic.py aot/now                     # one step's kernels by kind, the heaviest groups
    python benchmarks/hlo_traffic.py aot/before aot/now          # two compilations side by side, with the ratio

Each kernel of the entry computation (a fusion, a cuBLAS or cuDNN call, a copy) is charged the bytes of its
outputs and of every operand it reads, whole: a fusion that reads a slice of an operand is charged all of it, so the
figures are an upper bound on the traffic. Divided by the card's bandwidth they give a floor on the time of the
bandwidth-bound kernels (everything but matrix multiplies and attention), which is where a step spends what it does
not spend multiplying. This is a static reading of one compilation, made on any machine (`train.compile` compiles
for a GPU without one); it ranks candidates and shows what a change removed, and only a timed run on the card says
what that is worth. Kernels inside loops (`scan_layers=True`) are counted once.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys

ITEM_BYTES = {"pred": 1, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2,
              "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
_ARRAY = re.compile(r"\b([a-z]+\d*(?:e\dm\dfn)?)\[([\d,]*)\]")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\(.*?\)|[a-z]+\d*\[[\d,]*\](?:\{[^}]*\})?) "
                          r"([a-z][\w\-]*)\((.*?)\)(.*)$")
_OPERAND = re.compile(r"%([\w.\-]+)(?:#(\d+))?")
FREE = {"parameter", "constant", "bitcast", "get-tuple-element", "tuple", "opt-barrier", "after-all",
        "partition-id", "replica-id", "add-dependency"}
COMPUTE_BOUND = ("matmul", "attention", "GEMM fusion")


def array_bytes(shape_text: str) -> list[int]:
    """Bytes of each array in an HLO shape (one entry per tuple element)."""
    sizes = []
    for dtype, dims in _ARRAY.findall(shape_text):
        count = 1
        for dim in filter(None, dims.split(",")):
            count *= int(dim)
        sizes.append(count * ITEM_BYTES.get(dtype, 4))
    return sizes


def entry_instructions(text: str):
    """(name, opcode, operands text, attributes text, output bytes per tuple element) of the entry computation."""
    start = text.find("\nENTRY ")
    if start < 0:
        raise ValueError("no ENTRY computation: not an HLO module's text")
    body = text[start:]
    end = body.find("\n}\n")
    for line in body[:end if end > 0 else None].splitlines()[1:]:
        match = _INSTRUCTION.match(line)
        if match:
            name, shape, opcode, operands, attributes = match.groups()
            yield name, opcode, operands, attributes, array_bytes(shape)


def kernel_kind(opcode: str, attributes: str) -> str | None:
    """What runs a kernel: matmul (cuBLAS), attention (cuDNN), a fusion by its emitter, a copy; None for
    instructions that move no data."""
    if opcode in FREE:
        return None
    if opcode == "custom-call":
        target = re.search(r'custom_call_target="([^"]+)"', attributes)
        target = target.group(1) if target else ""
        if "cublas" in target or "gemm" in target:
            return "matmul"
        if "cudnn" in target or "fmha" in target:
            return "attention"
        return f"custom call {target}"
    if opcode == "fusion":
        kind = re.search(r"kind=(\w+)", attributes)
        kind = kind.group(1) if kind else ""
        if kind == "kCustom":
            if '"kind":"__triton_gemm"' in attributes or "gemm_fusion" in attributes or "__cudnn" in attributes:
                return "GEMM fusion"
            emitter = re.search(r'"kind":"__(\w+?)(_fusion)?"', attributes)
            if emitter and "triton" not in emitter.group(1):     # a CPU compilation's YNNPACK/XNNPACK/oneDNN calls
                return f"{emitter.group(1)} fusion"
            return "Triton fusion"
        return {"kLoop": "elementwise fusion", "kInput": "reduction fusion", "kOutput": "output fusion"}.get(
            kind, f"fusion {kind}")
    return opcode


def op_group(attributes: str, name: str) -> str:
    """The source operation of a kernel with layer numbers folded, so a model's 12 layers add up in one line."""
    found = re.search(r'op_name="([^"]+)"', attributes)
    source = found.group(1) if found else name
    source = re.sub(r"^jit\([^)]*\)/", "", source)
    return re.sub(r"layer_\d+", "layer_N", source)


def traffic(path: str) -> dict:
    """Per kind and per source group: kernels and bytes of one compiled step."""
    if os.path.isdir(path):
        path = os.path.join(path, "train_step.hlo.txt")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    outputs, kinds, groups = {}, collections.defaultdict(lambda: [0, 0]), collections.defaultdict(lambda: [0, 0])
    epilogues = collections.Counter()
    for name, opcode, operands, attributes, sizes in entry_instructions(text):
        outputs[name] = sizes
        kind = kernel_kind(opcode, attributes)
        if kind is None:
            continue
        # cuBLAS and cuDNN calls return their workspace as a tuple element that is never read back.
        moved = sizes[0] if opcode == "custom-call" and sizes else sum(sizes)
        for operand, index in _OPERAND.findall(operands):
            held = outputs.get(operand)
            if held:
                moved += held[int(index)] if index and int(index) < len(held) else held[0]
        kinds[kind][0] += 1
        kinds[kind][1] += moved
        if kind not in COMPUTE_BOUND:
            group = groups[(kind, op_group(attributes, name))]
            group[0] += 1
            group[1] += moved
        if kind == "matmul":
            found = re.search(r'"epilogue":"(\w+)"', attributes)
            epilogues[found.group(1) if found else "DEFAULT"] += 1
    bound = [v for k, v in kinds.items() if k not in COMPUTE_BOUND]
    return {"file": path, "kinds": {k: {"kernels": v[0], "bytes": v[1]} for k, v in kinds.items()},
            "groups": [{"kind": k, "source": s, "kernels": v[0], "bytes": v[1]}
                       for (k, s), v in sorted(groups.items(), key=lambda item: -item[1][1])],
            "bandwidth_bound_bytes": sum(v[1] for v in bound), "bandwidth_bound_kernels": sum(v[0] for v in bound),
            "matmul_epilogues": dict(epilogues)}


def report(results: list[dict], bandwidth: float, top: int) -> None:
    ms = lambda n: n / bandwidth * 1e3
    first = results[0]
    names = [os.path.basename(os.path.dirname(r["file"])) or r["file"] for r in results]
    print(f"bytes read and written per step, every operand counted whole; ms at {bandwidth / 1e12:.2f} TB/s")
    header = "".join(f" | {n[:28]:>28s}" for n in names)
    print(f"{'kernel kind':28s}{header}")
    kinds = sorted({k for r in results for k in r["kinds"]}, key=lambda k: -first["kinds"].get(k, {"bytes": 0})["bytes"])
    for kind in kinds:
        cells = ""
        for r in results:
            entry = r["kinds"].get(kind, {"kernels": 0, "bytes": 0})
            cells += f" | {entry['kernels']:5d} × {entry['bytes'] / 1e9:6.2f} GB {ms(entry['bytes']):6.2f} ms"
        print(f"{kind:28s}{cells}")
    cells = "".join(f" | {r['bandwidth_bound_kernels']:5d} × {r['bandwidth_bound_bytes'] / 1e9:6.2f} GB "
                    f"{ms(r['bandwidth_bound_bytes']):6.2f} ms" for r in results)
    print(f"{'bandwidth-bound, in all':28s}{cells}")
    print("matmul epilogues: " + "; ".join(f"{n}: {r['matmul_epilogues']}" for n, r in zip(names, results)))
    for r, name in zip(results, names):
        loops = r["kinds"].get("while", {}).get("kernels", 0)
        if loops:
            print(f"note: {name} runs {loops} loop(s) (scanned layers?) whose bodies are charged only their "
                  f"operands and outputs: compile with --config.model.scan_layers=false to read every layer")
    if len(results) == 2:
        before, after = (r["bandwidth_bound_bytes"] for r in results)
        print(f"bandwidth-bound bytes, {names[1]} / {names[0]}: {after / before:.3f}× "
              f"({(after - before) / 1e9:+.2f} GB, {ms(after - before):+.2f} ms at this bandwidth)")
    for r, name in zip(results, names):
        print(f"\nheaviest bandwidth-bound groups of {name}:")
        for group in r["groups"][:top]:
            print(f"  {group['bytes'] / 1e9:6.2f} GB {ms(group['bytes']):6.2f} ms {group['kernels']:4d} × "
                  f"{group['kind'][:18]:18s} {group['source'][-110:]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compiled", nargs="+", help="train.compile output folders or optimised HLO text files")
    parser.add_argument("--bandwidth", type=float, default=3.35, help="the card's memory bandwidth, TB/s "
                        "(H100 SXM 3.35, H200 4.8)")
    parser.add_argument("--top", type=int, default=15, help="groups listed per compilation")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args(argv)
    try:
        results = [traffic(path) for path in args.compiled]
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report(results, args.bandwidth * 1e12, args.top)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
