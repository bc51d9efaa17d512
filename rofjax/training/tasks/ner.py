"""Nested NER with GlobalPointer / Efficient GlobalPointer (kexue.fm 8373, 8877).

Records are `{text, entities: [(type, start, end)]}` (character offsets, end exclusive). Labels are sparse
`[types, P, 2]` token pairs padded with (0, 0), trained with the sparse ZLPR loss; evaluation decodes spans on the
host and reports entity-level micro P/R/F1 on character spans (what the GlobalPointer posts report) and the
CLUENER leaderboard's macro F1 over entity-string sets per type.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rofjax.decode.metrics import cluener_official_f1
from rofjax.decode.spans import extract_spans_batch, merge_window_spans, span_prf, spans_to_chars
from rofjax.losses import sparse_global_pointer_crossentropy
from rofjax.models import SpanClassifier
from rofjax.training.tasks.base import Task, fetched_one_behind, padded_ids, sparse_pairs
from rofjax.training.tasks.text_spans import token_boundaries, windowed_batches


@dataclasses.dataclass
class NERTask(Task):
    metric_names = ("f1", "precision", "recall", "macro_f1", "examples")

    types: list[str]
    max_length: int = 128
    head_size: int = 64
    efficient: bool = True
    max_spans_per_type: int = 16
    threshold: float = 0.0
    window_stride: int | None = None          # tokens between windows over long texts (None: half a window)
    use_bias: bool = True
    head_initializer: str = "lecun"

    @classmethod
    def from_config(cls, config, model_config, tokenizer, labels, **options):
        types = list(config.data.entity_types) or list(labels or [])
        unlisted = sorted(set(labels or []) - set(types))
        if unlisted:
            raise ValueError(f"config.data.entity_types={tuple(types)} lacks {', '.join(map(repr, unlisted))}, "
                             f"which dataset {config.data.dataset!r} uses; list every type of its training data "
                             f"(or leave the key empty to take them from the data).")
        if not types:
            where = f" ({config.data.data_dir})" if config.data.get("data_dir") else ""
            raise ValueError(f"config.data.entity_types is empty and dataset {config.data.dataset!r} has no entity in "
                             f"its training data{where} to read the types from (an empty file?); label some entities, "
                             f"or list the types in config.data.entity_types.")
        return cls(model_config, tokenizer, types, max_length=config.data.max_length,
                   head_size=config.data.head_size, **options)

    def __post_init__(self):
        self.model = SpanClassifier(self.model_config, heads=len(self.types), head_size=self.head_size,
                                    efficient=self.efficient, use_bias=self.use_bias,
                                    head_initializer=self.head_initializer)
        self.type_index = {t: i for i, t in enumerate(self.types)}

    def encode(self, record: dict) -> dict:
        ids, _, starts, ends = token_boundaries(self.tokenizer, record["text"], self.max_length)
        spans = [set() for _ in self.types]
        for kind, start, end in record["entities"]:
            h, t = starts.get(start), ends.get(end)
            if kind not in self.type_index:
                where = record.get("source") or (f"line {record['line']}" if "line" in record else record["text"])
                raise ValueError(f"entity type {kind!r} of a record ({where}) is not among the task's types "
                                 f"{tuple(self.types)} (config.data.entity_types); list every type the data uses.")
            if h is not None and t is not None and h <= t:
                spans[self.type_index[kind]].add((h, t))
        return {"input_ids": padded_ids(ids, self.max_length),
                "span_labels": sparse_pairs(spans, self.max_spans_per_type)}

    def init_batch(self, batch_size: int) -> dict:
        return {"input_ids": np.ones((batch_size, self.max_length), np.int32),
                "span_labels": np.zeros((batch_size, len(self.types), self.max_spans_per_type, 2), np.int32)}

    def loss(self, params, batch, rng, step):
        logits = self.model.apply({"params": params}, batch["input_ids"], deterministic=False,
                                  rngs={"dropout": rng})
        return sparse_global_pointer_crossentropy(batch["span_labels"], logits), {}

    def decode(self, params, records, batch_size: int) -> list[list[tuple]]:
        """Per record, its entities as sorted `(type, start, end_exclusive)` character spans; long texts are
        decoded in overlapping windows whose spans are mapped back to the text and merged."""
        predict = self.jitted(self.predict)
        found: list[list[list[tuple]]] = [[] for _ in records]
        dispatched = ((predict(params, batch), chunk) for chunk, batch in
                      windowed_batches(self.tokenizer, records, self.max_length, batch_size, self.window_stride))
        for logits, chunk in fetched_one_behind(dispatched):
            logits = logits[: len(chunk)]
            decoded = extract_spans_batch(logits, [len(p[1]) for p in chunk], threshold=self.threshold,
                                          labels=self.types)
            for (index, _, offsets), spans in zip(chunk, decoded):
                found[index].append(spans_to_chars(spans, offsets))
        return [merge_window_spans(parts) for parts in found]

    def evaluate(self, params, records, batch_size: int) -> dict:
        predicted = self.decode(params, records, batch_size)
        gold = [set(map(tuple, r["entities"])) for r in records]
        scores = span_prf(predicted, gold)

        def strings(spans, text):
            out: dict[str, set[str]] = {}
            for kind, start, end in spans:
                out.setdefault(kind, set()).add(text[start:end])
            return out

        texts = [r["text"] for r in records]
        official = cluener_official_f1([strings(p, t) for p, t in zip(predicted, texts)],
                                       [strings(g, t) for g, t in zip(gold, texts)], self.types)
        return {"f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"],
                "macro_f1": official["macro_f1"], "examples": len(records)}
