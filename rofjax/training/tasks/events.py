"""GPLinker joint event extraction (kexue.fm 8926): argument spans per (event type, role), head–head and tail–tail
links, sparse ZLPR loss; evaluation decodes on the host (`rofjax.decode.events`) and scores as the authors did.

Labels are built per example and kept sparse: `[classes, P, 2]` (start, end) token pairs padded with (0, 0), which
the loss masks (`mask_zero`) — never a dense classes × n × n tensor. Arguments whose character boundaries do not
fall on token boundaries are dropped from the labels, as in the authors' scripts.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rofjax.decode.events import (
    TRIGGER_ROLE,
    DecodeReport,
    events_to_text,
    extract_events_batch,
    remove_subsets,
)
from rofjax.decode.metrics import gplinker_event_scores
from rofjax.losses import sparse_global_pointer_crossentropy
from rofjax.models import GPLinker
from rofjax.models.flops import encoder_training_flops, global_pointer_flops
from rofjax.training.tasks.base import Task, fetched_one_behind, padded_ids, sparse_pairs
from rofjax.training.tasks.text_spans import token_boundaries, windowed_batches


@dataclasses.dataclass
class EventTask(Task):
    labels: list[tuple[str, str]]
    max_length: int = 128
    head_size: int = 64

    metric_names = ("event_f1", "event_precision", "event_recall", "argument_f1", "decode_caps_hit", "examples")
    max_spans_per_class: int = 8
    max_links: int = 32
    threshold: float = 0.0

    @classmethod
    def from_config(cls, config, model_config, tokenizer, labels, **options):
        """`labels`: the dataset's `EventSchema`."""
        return cls(model_config, tokenizer, labels.labels, max_length=config.data.max_length,
                   head_size=config.data.head_size, **options)

    def __post_init__(self):
        self.model = GPLinker(self.model_config, spans=len(self.labels), links=1, head_size=self.head_size)
        self.label_index = {label: i for i, label in enumerate(self.labels)}

    # Host side ------------------------------------------------------------------------------------------------
    def encode(self, record: dict) -> dict:
        ids, _, starts, ends = token_boundaries(self.tokenizer, record["text"], self.max_length)
        spans = [set() for _ in self.labels]
        heads, tails = set(), set()
        for event in record["events"] or []:
            arguments = []
            for event_type, role, value, start in event:
                h, t = starts.get(start), ends.get(start + len(value))
                if h is None or t is None or h > t:
                    continue                                        # not on token boundaries, or truncated away
                spans[self.label_index[(event_type, role)]].add((h, t))
                arguments.append((h, t))
            for i, (h1, t1) in enumerate(arguments):
                for h2, t2 in arguments[i + 1:]:
                    heads.add((min(h1, h2), max(h1, h2)))
                    tails.add((min(t1, t2), max(t1, t2)))
        return {"input_ids": padded_ids(ids, self.max_length),
                "span_labels": sparse_pairs(spans, self.max_spans_per_class),
                "head_labels": sparse_pairs([heads], self.max_links), "tail_labels": sparse_pairs([tails], self.max_links)}

    def init_batch(self, batch_size: int) -> dict:
        return {"input_ids": np.ones((batch_size, self.max_length), np.int32),
                "span_labels": np.zeros((batch_size, len(self.labels), self.max_spans_per_class, 2), np.int32),
                "head_labels": np.zeros((batch_size, 1, self.max_links, 2), np.int32),
                "tail_labels": np.zeros((batch_size, 1, self.max_links, 2), np.int32)}

    # Device side ----------------------------------------------------------------------------------------------
    def _logits(self, params, input_ids, rng=None):
        deterministic = rng is None
        return self.model.apply({"params": params}, input_ids, deterministic=deterministic,
                                rngs=None if deterministic else {"dropout": rng})

    def loss(self, params, batch, rng, step):
        spans, heads, tails = self._logits(params, batch["input_ids"], rng)
        parts = {"span_loss": sparse_global_pointer_crossentropy(batch["span_labels"], spans),
                 "head_loss": sparse_global_pointer_crossentropy(batch["head_labels"], heads),
                 "tail_loss": sparse_global_pointer_crossentropy(batch["tail_labels"], tails)}
        return sum(parts.values()), parts

    def predict(self, params, batch):
        return self._logits(params, batch["input_ids"])

    def decode(self, params, records, batch_size: int) -> list[list[list[tuple]]]:
        """Per record, its events as sorted `(event_type, role, text, start)` lists, decoded on the host; long
        texts in overlapping windows whose events are merged (an event contained in another is dropped)."""
        predict = self.jitted(self.predict)
        self.report = DecodeReport()
        found: list[set] = [set() for _ in records]
        dispatched = ((predict(params, batch), chunk) for chunk, batch in
                      windowed_batches(self.tokenizer, records, self.max_length, batch_size))
        for (spans, heads, tails), chunk in fetched_one_behind(dispatched):
            decoded = extract_events_batch(spans[: len(chunk)], heads[: len(chunk)], tails[: len(chunk)],
                                           self.labels, [len(p[1]) for p in chunk], threshold=self.threshold,
                                           report=self.report)
            for (index, _, offsets), events in zip(chunk, decoded):
                found[index].update(tuple(e) for e in events_to_text(events, offsets, records[index]["text"]))
        return [[list(e) for e in remove_subsets(list(events))] for events in found]

    def evaluate(self, params, records, batch_size: int) -> dict:
        """Decode every record and score events and arguments (the GPLinker dev metrics)."""
        predicted = self.decode(params, records, batch_size)
        gold = [[tuple(e) for e in r["events"] or []] for r in records]
        scores = gplinker_event_scores(predicted, gold, trigger_role=TRIGGER_ROLE)
        return {"event_f1": scores["event"]["f1"], "event_precision": scores["event"]["precision"],
                "event_recall": scores["event"]["recall"], "argument_f1": scores["argument"]["f1"],
                "decode_caps_hit": len(self.report.capped), "examples": len(records)}

    def flops_per_example(self) -> float:
        n = self.max_length
        return encoder_training_flops(self.model_config, n) + 3 * global_pointer_flops(
            self.model_config, n, heads=3, head_size=self.head_size)
