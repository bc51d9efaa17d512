"""grain input pipelines over tfds array_record data sources.

Training batches come from `MapDataset.source → shuffle(seed) → repeat → map(encode) → batch` turned into an
iterator whose state (`get_state`/`set_state`) is saved with every checkpoint, so a resumed run sees exactly the
batches it would have seen. Each host reads its own slice (`process_index::process_count`) and batches
`global_batch / process_count` rows; the loop assembles global arrays from them. Evaluation batches keep every
example once, padding the last batch with zero-weight rows so that every batch has one shape (one compilation).
"""

from __future__ import annotations

import os
from collections.abc import Callable

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


def _stack(rows: list[dict]) -> dict:
    return {key: np.stack([row[key] for row in rows]) for key in rows[0]}


def train_iterator(source, encode: Callable[[dict], dict], *, batch_size: int, seed: int):
    """Endless, shuffled (a new order every epoch), per-host batches of `encode`d records; checkpointable."""
    dataset = grain.MapDataset.source(source)
    if jax.process_count() > 1:
        dataset = dataset[jax.process_index()::jax.process_count()]
    dataset = dataset.shuffle(seed=seed).repeat(None).map(encode)
    dataset = dataset.batch(host_batch_size(batch_size), drop_remainder=True, batch_fn=_stack)
    return iter(dataset.to_iter_dataset())


def eval_batches(source, encode: Callable[[dict], dict], *, batch_size: int):
    """Every record once, in order, in per-host batches; the last batch is padded with `weights == 0` rows."""
    dataset = grain.MapDataset.source(source)
    if jax.process_count() > 1:
        dataset = dataset[jax.process_index()::jax.process_count()]
    dataset = dataset.map(encode)
    per_host = host_batch_size(batch_size)
    rows = []
    for row in dataset:
        rows.append(row)
        if len(rows) == per_host:
            yield _stack(rows)
            rows = []
    if rows:
        filler = {k: np.zeros_like(v) for k, v in rows[0].items()}
        count = len(rows)
        rows += [filler] * (per_host - count)
        batch = _stack(rows)
        batch["weights"] = np.where(np.arange(per_host) < count, batch["weights"], 0).astype(np.float32)
        yield batch
