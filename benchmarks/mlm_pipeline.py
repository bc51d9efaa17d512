"""The masked-LM input pipeline on the host: long documents chunked (every row of them) against cut (their first row).

    python benchmarks/mlm_pipeline.py [--config configs/pretrain/tiny_mlm.py] [--batches 40] [--rounds 3]
                                      [--config.x=y ...]

Times `train_iterator` of the config's masked-LM task, one batch at a time without prefetching (what one host core
spends per batch: jieba, WordPiece, packing, masking), for `data.long_documents=chunk` and `=cut` alternately in one
process, and counts the real (non-padding) tokens of each batch. Chunking trains on the parts of long documents
that cutting drops, so a batch holds different documents; tokens per second of host time is the comparable rate.
"""

import argparse
import os
import statistics
import sys
import time

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--config", default="configs/pretrain/tiny_mlm.py")
parser.add_argument("--batches", type=int, default=40, help="timed batches per round and setting")
parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
args, overrides = parser.parse_known_args()
if args.batches < 1 or args.rounds < 1:
    parser.error("--batches and --rounds must be at least 1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from _config_cli import define_config  # noqa: E402
from absl import flags  # noqa: E402

config_path = define_config(parser, args.config, overrides, ROOT, "masked-LM training config")


def iterator(long_documents):
    from rofjax.data.datasets import get_dataset
    from rofjax.data.pipeline import train_iterator
    from rofjax.training.loop import build_task

    config = flags.FLAGS.config.copy_and_resolve_references()
    if config.task != "mlm":
        parser.error(f"{config_path} is a config.task={config.task!r} config; this measures masked LM")
    config.data.long_documents = long_documents
    task = build_task(config)
    records = get_dataset(config.data.dataset).split("train", config.data.data_dir, config.seed)
    return train_iterator(task, records, batch_size=config.train.batch_size, seed=config.seed, prefetch=0)


def timed(batches):
    started, tokens = time.perf_counter(), 0
    for _ in range(args.batches):
        tokens += int(np.sum(next(batches)["doc_ids"] > 0))
    return (time.perf_counter() - started) / args.batches, tokens / args.batches


def main():
    import warnings

    warnings.simplefilter("ignore")                  # the cut pipeline's one notice
    pipelines = {name: iterator(name) for name in ("chunk", "cut")}
    for batches in pipelines.values():
        timed(batches)      # untimed: jieba's dictionary, and grain's read threads filling their look-ahead
    times = {name: [] for name in pipelines}
    tokens = {name: [] for name in pipelines}
    for _ in range(args.rounds):
        for name, batches in pipelines.items():
            seconds, real = timed(batches)
            times[name].append(seconds)
            tokens[name].append(real)
    config = flags.FLAGS.config
    print(f"{os.path.relpath(config_path, ROOT)}: batch {config.train.batch_size} × {config.data.max_length}, "
          f"{args.batches} batches × {args.rounds} rounds, {os.cpu_count()} host cores")
    rate = {}
    for name in pipelines:
        ms, real = statistics.median(times[name]) * 1e3, statistics.median(tokens[name])
        rate[name] = real / ms * 1e3
        print(f"{name:>5}: {ms:.1f} ms/batch (rounds {', '.join(f'{t * 1e3:.1f}' for t in times[name])}), "
              f"{real:.0f} real tokens/batch, {rate[name]:,.0f} tokens/s of host time")
    print(f"chunk / cut: {statistics.median(times['chunk']) / statistics.median(times['cut']):.2f}x the time per "
          f"batch, {rate['chunk'] / rate['cut']:.2f}x the tokens per second")


if __name__ == "__main__":
    main()
