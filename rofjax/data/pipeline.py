"""grain input pipelines over tfds array_record data sources.

Training batches come from `MapDataset.source → shuffle(seed) → repeat → task.training_examples → batch` (the
task maps records to examples: encoding, or packing and masking for pre-training) turned into an iterator whose
state (`get_state`/`set_state`) is saved with every checkpoint, so a resumed run sees exactly the batches it would
have seen. Each host reads its own slice (`process_index::process_count`) and batches `global_batch /
process_count` rows; the loop assembles global arrays from them. Evaluation batches keep every example once,
padding the last batch with zero-weight rows so that every batch has one shape (one compilation).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import grain
import jax
import numpy as np


def prepare(builder_cls, data_dir: str | os.PathLike, **builder_kwargs):
    """Build (once) and return a tfds builder written as array_record under `data_dir`."""
    builder = builder_cls(data_dir=os.fspath(data_dir), file_format="array_record", **builder_kwargs)
    builder.download_and_prepare()
    return builder


def host_batch_size(global_batch: int) -> int:
    processes = jax.process_count()
    if global_batch % processes:
        raise ValueError(f"batch_size={global_batch} is not divisible by the {processes} host processes.")
    return global_batch // processes


def stack_rows(rows: list[dict]) -> dict:
    return {key: np.stack([row[key] for row in rows]) for key in rows[0]}


def train_iterator(task, source, *, batch_size: int, seed: int, prefetch: int = 2, workers: int = 0):
    """Endless, shuffled (a new order every epoch) per-host batches of `task.training_examples`; checkpointable.
    Each host reads its own slice of `source` and batches `batch_size / process_count` rows.

    With `prefetch` > 0 a background thread keeps up to that many batches ready, so that the host's encoding,
    packing and masking run while the accelerator computes the step before (a masked-LM batch of 32 × 512 takes a
    host core longer than an H100 takes to train on it). The saved position is that of the last batch handed out,
    not of the last one prepared, so a resumed run sees the same batches with or without it.

    With `workers` > 0 the batches are made in that many processes (grain's `mp_prefetch`, `prefetch` batches
    ahead in each), for hosts whose accelerators consume batches faster than one core makes them. Each process
    packs and masks its own share of the documents, so the batches depend on `workers` (and are the same for the
    same value); a run resumes with the value it was saved with."""
    dataset = grain.MapDataset.source(source)
    if jax.process_count() > 1:
        dataset = dataset[jax.process_index()::jax.process_count()]
    per_host = host_batch_size(batch_size)
    examples = task.training_examples(dataset.shuffle(seed=seed).repeat(None), batch_size=per_host, seed=seed)
    batches = examples.batch(per_host, drop_remainder=True, batch_fn=stack_rows)
    if workers > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():                 # grain's worker processes read absl flags
            flags.FLAGS.mark_as_parsed()
        batches = batches.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers,
                                                                   per_worker_buffer_size=max(1, prefetch)))
    elif prefetch > 0:
        batches = grain.experimental.ThreadPrefetchIterDataset(batches, prefetch_buffer_size=prefetch)
    return iter(batches)


def padded_batches(examples: Iterable[dict], batch_size: int) -> Iterator[dict]:
    """Every example once, in order, in batches of exactly `batch_size` rows; `weights` is 1 on real rows and 0 on
    the zero rows that fill the last batch (one shape, one compilation)."""
    rows: list[dict] = []
    for example in examples:
        rows.append({**example, "weights": np.float32(example.get("weights", 1.0))})
        if len(rows) == batch_size:
            yield stack_rows(rows)
            rows = []
    if rows:
        filler = {k: np.zeros_like(v) for k, v in rows[0].items()}
        yield stack_rows(rows + [filler] * (batch_size - len(rows)))
