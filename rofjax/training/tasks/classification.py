"""Sentence and sentence-pair classification (CLS pooling), bert4keras style.

Pairs are encoded `[CLS] a [SEP] b [SEP]`; `pair_segment_ids=False` keeps every segment id 0, as the CLUE recipes
of RoFormerV2 and GAU-α do (their pre-training never saw segment 1). An empty pair field means a single sentence.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import optax

from rofjax.models import SequenceClassifier
from rofjax.models.schedules import residual_alpha
from rofjax.training.tasks.base import Task, padded_ids


@dataclasses.dataclass
class ClassificationTask(Task):
    num_labels: int
    max_length: int = 128
    text_key: str = "text"
    pair_key: str | None = None
    label_key: str = "label"
    pair_segment_ids: bool = False
    alpha_ramp_steps: int = 0
    pooling: str = "cls"

    predict_keys = ("input_ids", "segment_ids")
    metric_names = ("loss", "accuracy", "examples")

    @classmethod
    def from_config(cls, config, model_config, tokenizer, labels, **options):
        data = config.data
        return cls(model_config, tokenizer, num_labels=len(labels) if labels else data.num_labels,
                   max_length=data.max_length, text_key=data.text_key,
                   pair_key=data.pair_key or options.get("pair_key"), label_key=data.label_key,
                   alpha_ramp_steps=config.train.alpha_ramp_steps, pooling=data.pooling)

    def __post_init__(self):
        self.model = SequenceClassifier(self.model_config, num_labels=self.num_labels, pooling=self.pooling)

    # Host side ------------------------------------------------------------------------------------------------
    def _text(self, record: dict, key: str) -> str:
        if key not in record:
            raise KeyError(f"record {_name(record)} has no field {key!r} (fields: {sorted(record)}); set "
                           f"config.data.text_key / pair_key / label_key.")
        value = record[key]
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    def _inputs(self, record: dict) -> dict:
        pair = self._text(record, self.pair_key) if self.pair_key else ""
        ids, segments, _ = self.tokenizer.encode(self._text(record, self.text_key), pair or None,
                                                 maxlen=self.max_length)
        return {"input_ids": padded_ids(ids, self.max_length),
                "segment_ids": padded_ids(segments if self.pair_segment_ids else [], self.max_length)}

    def encode(self, record: dict) -> dict:
        label = int(record[self.label_key]) if self.label_key in record else -1
        if label < 0:
            raise ValueError(f"record {_name(record)} has no label; training and evaluation need labelled "
                             f"train/dev files.")
        if label >= self.num_labels:
            raise ValueError(f"label {label} of record {_name(record)} is outside [0, {self.num_labels}).")
        return {**self._inputs(record), "labels": np.int32(label), "weights": np.float32(1.0)}

    def init_batch(self, batch_size: int) -> dict:
        return {"input_ids": np.ones((batch_size, self.max_length), np.int32),
                "segment_ids": np.zeros((batch_size, self.max_length), np.int32),
                "labels": np.zeros((batch_size,), np.int32), "weights": np.ones((batch_size,), np.float32)}

    # Device side ----------------------------------------------------------------------------------------------
    def init_params(self, rng, batch):
        return self.model.init(rng, batch["input_ids"], batch["segment_ids"])["params"]

    def _logits(self, params, batch, *, rng=None, step=None):
        deterministic = rng is None
        kwargs = {}
        if self.model_config.residual_mode == "alpha" and step is not None:
            kwargs["residual_alpha"] = residual_alpha(step, self.alpha_ramp_steps)
        return self.model.apply({"params": params}, batch["input_ids"], batch["segment_ids"],
                                deterministic=deterministic, rngs=None if deterministic else {"dropout": rng},
                                **kwargs)

    def loss(self, params, batch, rng, step):
        return weighted_loss_and_accuracy(self._logits(params, batch, rng=rng, step=step), batch)

    def eval_sums(self, params, batch):
        return weighted_sums(self._logits(params, batch), batch)

    def summarize(self, sums: dict) -> dict:
        return summarize_accuracy(sums)

    def predict(self, params, batch):
        return jnp.argmax(self._logits(params, batch), -1)

    def decode(self, params, records, batch_size: int) -> list[int]:
        """Per record, the index of its predicted label."""
        return [int(p) for p in self.predict_all(params, [self._inputs(r) for r in records], batch_size)]


def _name(record: dict) -> str:
    for key in ("id", "source", "line"):
        if key in record:
            value = record[key]
            return repr(value.decode("utf-8") if isinstance(value, bytes) else value)
    return "?"


def weighted_sums(logits, batch) -> dict:
    """Σ weight·CE, Σ weight·[argmax = label] and Σ weight over a batch (padding rows have weight 0)."""
    weights = batch["weights"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])
    correct = (jnp.argmax(logits, -1) == batch["labels"]).astype(jnp.float32)
    return {"loss": jnp.sum(ce * weights), "correct": jnp.sum(correct * weights), "count": jnp.sum(weights)}


def weighted_loss_and_accuracy(logits, batch):
    sums = weighted_sums(logits, batch)
    denominator = jnp.maximum(sums["count"], 1e-7)
    return sums["loss"] / denominator, {"accuracy": sums["correct"] / denominator}


def summarize_accuracy(sums: dict, count_name: str = "examples") -> dict:
    count = max(float(sums["count"]), 1e-9)
    return {"loss": float(sums["loss"]) / count, "accuracy": float(sums["correct"]) / count,
            count_name: int(round(float(sums["count"])))}
