"""The declared interface of a training task, and what every task shares.

A task turns a dataset's records into fixed-shape numpy examples on the host (`encode`), owns the model that reads
them (`model`, `init_params`), its training loss (`loss`), its evaluation (`evaluate`, one signature for every
task) and, where its outputs are structures (labels, spans, triples, events, answers), host-side decoding
(`decode`). The training loop, `train.predict`, ahead-of-time compilation and the benchmarks reach a task only
through these methods; a dataset's leaderboard file is written by its `DatasetSpec`, not by the task.

Evaluation has one signature, `evaluate(params, records, batch_size) -> dict`, and two common bodies:
* metric sums (classification, masked LM) — the default here: `eval_sums` over fixed-shape batches, added up on the
  host and turned into metrics by `summarize`;
* decoding (NER, relations, events, CLUE reading comprehension and idioms) — the task overrides `evaluate` to
  `decode` the records and score what it found against them.

Every jitted function of a task comes from `jitted(...)`, one compilation per method and input shape; batches
have one shape (padding rows), so evaluation and prediction compile once.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar

import grain
import jax
import numpy as np

from rofjax.data.pipeline import padded_batches
from rofjax.data.tokenizer import Tokenizer, pad_batch
from rofjax.models.config import ModelConfig
from rofjax.models.flops import encoder_training_flops


@dataclasses.dataclass
class Task(abc.ABC):
    """Base of every task. Subclasses are dataclasses that add their own fields (at least `max_length`) and build
    `self.model` in `__post_init__`."""

    model_config: ModelConfig
    tokenizer: Tokenizer

    # True when `expand` turns one training record into several examples (windows over a long text); the loop
    # then expands the training split before shuffling, so an epoch counts examples.
    expands_records: ClassVar[bool] = False
    # The batch keys `predict` reads.
    predict_keys: ClassVar[tuple[str, ...]] = ("input_ids",)
    # The names `evaluate` returns, so that a `config.eval.best_metric` it will never report is refused before
    # training rather than at the first evaluation. Empty: not declared (a task of your own), checked only then.
    # A subclass inherits its parent's: one whose `evaluate` reports other names declares them (or `()`).
    metric_names: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config, model_config: ModelConfig, tokenizer: Tokenizer, labels, **options) -> Task:
        """The task of a training config: `labels` is the dataset's label set (`DatasetSpec.labels`), `options`
        what the dataset asks of this task (`DatasetSpec.tasks`)."""

    # Host side --------------------------------------------------------------------------------------------------
    def encode(self, record: dict) -> dict:
        """One record → one example of fixed-shape numpy arrays (the keys of `init_batch`)."""
        raise NotImplementedError(f"{type(self).__name__}.encode")

    def expand(self, record: dict) -> list[dict]:
        return [record]

    @abc.abstractmethod
    def init_batch(self, batch_size: int) -> dict:
        """A batch of the right shapes and dtypes (values arbitrary), for initialisation and compilation."""

    def tokens(self, batch: dict) -> int:
        """Non-padding tokens of a batch, for tokens/s."""
        return int(np.sum(np.asarray(batch["input_ids"]) != 0))

    def training_examples(self, records: grain.MapDataset, *, batch_size: int, seed: int) -> grain.IterDataset:
        """The endless, shuffled records of one host → the examples its batches are cut from. `batch_size` is
        per host (packing tasks size their bins by it)."""
        del batch_size, seed
        return records.map(self.encode).to_iter_dataset()

    def eval_example(self, index: int, record: dict) -> dict:
        """The example scored for the `index`-th evaluation record (random choices must depend on `index` only,
        so every evaluation sees the same examples)."""
        del index
        return self.encode(record)

    # Device side ------------------------------------------------------------------------------------------------
    def init_params(self, rng, batch: dict):
        return self.model.init(rng, batch["input_ids"])["params"]

    @abc.abstractmethod
    def loss(self, params, batch: dict, rng, step) -> tuple[Any, dict]:
        """`(scalar loss, {name: scalar})` of a training batch; `rng` drives dropout, `step` schedules."""

    def eval_sums(self, params, batch: dict) -> dict:
        """Sums over a batch (rows with `weights == 0` are padding) that `summarize` turns into metrics."""
        raise NotImplementedError(f"{type(self).__name__} evaluates by decoding; it has no eval_sums")

    def summarize(self, sums: dict) -> dict:
        raise NotImplementedError(f"{type(self).__name__} evaluates by decoding; it has no summarize")

    def predict(self, params, batch: dict):
        """The model's outputs for a batch of `predict_keys` (what `decode` reads)."""
        return self.model.apply({"params": params}, batch["input_ids"])

    def flops_per_example(self) -> float:
        """Training FLOPs of one example (forward + backward ≈ 3 × forward matmul FLOPs), encoder only."""
        return encoder_training_flops(self.model_config, self.max_length)

    # Evaluation and decoding -------------------------------------------------------------------------------------
    def evaluate(self, params, records: Sequence[dict], batch_size: int) -> dict:
        """Metrics of `params` on `records` (labelled). Runs under the caller's mesh and axis rules."""
        eval_sums = self.jitted(self.eval_sums)
        sums = None
        examples = (self.eval_example(index, record) for index, record in enumerate(records))
        dispatched = ((eval_sums(params, batch), None) for batch in padded_batches(examples, batch_size))
        for out, _ in fetched_one_behind(dispatched):
            sums = out if sums is None else {k: sums[k] + out[k] for k in sums}
        return self.summarize(sums) if sums is not None else {}

    def decode(self, params, records: Sequence[dict], batch_size: int) -> list:
        """Per record, the task's prediction as plain Python values (what a dataset's submission writer takes)."""
        raise NotImplementedError(f"{type(self).__name__} has no decoder")

    def jitted(self, method: Callable) -> Callable:
        """`jax.jit` of one of this task's methods, compiled once and kept."""
        cache = self.__dict__.setdefault("_jitted", {})
        if method.__name__ not in cache:
            cache[method.__name__] = jax.jit(method)
        return cache[method.__name__]

    def predict_all(self, params, examples: list[dict], batch_size: int) -> np.ndarray:
        """`predict` over encoded examples in fixed-shape batches (the last one padded by repeating a row)."""
        predict = self.jitted(self.predict)

        def dispatched():
            for start in range(0, len(examples), batch_size):
                chunk = examples[start:start + batch_size]
                rows = chunk + [chunk[0]] * (batch_size - len(chunk))
                batch = {k: np.stack([r[k] for r in rows]) for k in self.predict_keys}
                yield predict(params, batch), len(chunk)

        outputs = [np.asarray(out)[:rows] for out, rows in fetched_one_behind(dispatched())]
        return np.concatenate(outputs) if outputs else np.zeros((0,))


# Helpers the tasks share ------------------------------------------------------------------------------------------

def fetched_one_behind(dispatched: Iterable[tuple]) -> Iterator[tuple]:
    """`(jax.device_get(result), tag)` for each `(result, tag)` that `dispatched` yields, each result read back only
    once the next one has been dispatched. `dispatched` starts a batch's computation when asked for it, so the
    device computes batch k + 1 while the caller decodes (or the generator prepares) batch k on the host; results
    come in order, and at most two batches' outputs are held on the device."""
    pending = None
    for item in dispatched:
        if pending is not None:
            yield jax.device_get(pending[0]), pending[1]
        pending = item
    if pending is not None:
        yield jax.device_get(pending[0]), pending[1]


def padded_ids(ids: Sequence[int], length: int) -> np.ndarray:
    """One row of token ids padded with 0 (and cut) to `length`, int32."""
    return pad_batch([ids], length)[0]


def sparse_pairs(groups: Sequence[Iterable[tuple[int, int]]], limit: int) -> np.ndarray:
    """Sets of (start, end) token pairs → `[len(groups), limit, 2]` int32, each group sorted and padded with (0, 0)
    (the sparse ZLPR loss masks the padding); pairs past `limit` are dropped."""
    out = np.zeros((len(groups), limit, 2), np.int32)
    for k, pairs in enumerate(groups):
        for p, pair in enumerate(sorted(pairs)[:limit]):
            out[k, p] = pair
    return out
