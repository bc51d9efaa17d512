"""GPLinker event decoding: rofjax's decoder vs a direct port of the authors' recursive clique search.

Inputs imitate a DuEE model early in training: 282 (event type, role) classes over 128 tokens, a few event
types with many above-threshold arguments each and dense links. Both decoders must return the same events;
the script times both on the same sequences and prints the ratio.

    python benchmarks/decode_events.py [--sequences 20] [--arguments 14]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rofjax.decode.events import extract_events  # noqa: E402
from tests.decode.gplinker_reference import extract_events as reference_extract_events  # noqa: E402


def make_sequence(rng, labels, n, arguments_per_type, types, link_density):
    argu = np.full((len(labels), n, n), -10.0, np.float32)
    chosen_types = rng.choice(sorted({t for t, _ in labels}), size=types, replace=False)
    for event_type in chosen_types:
        classes = [i for i, (t, _) in enumerate(labels) if t == event_type]
        for _ in range(arguments_per_type):
            h = int(rng.integers(1, n - 2))
            t = int(rng.integers(h, min(n - 1, h + 6)))
            argu[rng.choice(classes), h, t] = rng.uniform(0.1, 5.0)
    head = np.where(rng.random((n, n)) < link_density, 1.0, -1.0).astype(np.float32)
    tail = np.where(rng.random((n, n)) < link_density, 1.0, -1.0).astype(np.float32)
    return argu, head, tail


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not ≥ 1")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=_positive, default=20)
    parser.add_argument("--arguments", type=int, default=14, help="above-threshold arguments per event type")
    parser.add_argument("--types", type=int, default=3)
    parser.add_argument("--density", type=float, default=0.85, help="fraction of positive head/tail cells")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    labels = [(f"type{k}", role) for k in range(65) for role in ["触发词"] + [f"role{r}" for r in range(4)]]
    labels += [(f"type{k}", "role4") for k in range(17)]                  # 282 classes, as DuEE 1.0
    sequences = [make_sequence(rng, labels, 128, args.arguments, args.types, args.density)
                 for _ in range(args.sequences)]

    def timed(fn, **kwargs):
        start = time.perf_counter()
        out = [fn(*s, labels, **kwargs) for s in sequences]
        return time.perf_counter() - start, out

    ours_s, ours = timed(extract_events, max_arguments_per_class=None, max_arguments=None)
    ref_s, theirs = timed(reference_extract_events)
    if ours != theirs:
        raise SystemExit("the decoders disagree; the timing would mean nothing")
    events = sum(len(e) for e in ours)
    print(f"{args.sequences} sequences, {args.types}×{args.arguments} candidate arguments each, {events} events")
    print(f"reference port {ref_s / args.sequences * 1e3:9.2f} ms/sequence")
    print(f"rofjax         {ours_s / args.sequences * 1e3:9.2f} ms/sequence")
    print(f"ratio {ref_s / ours_s:.1f}x faster")


if __name__ == "__main__":
    main()
