"""GPLinker relation extraction (kexue.fm 8888): subject/object pointer, per-predicate head and tail pointers.

DuIE lines carry no offsets: a subject or object is located at its first occurrence in the text, as the authors'
`duie_v1.py` does, and dropped when its boundaries are not token boundaries. Evaluation is exact
(subject, predicate, object) triple F1 on text.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rofjax.decode.relations import extract_triples_batch
from rofjax.decode.spans import span_prf
from rofjax.losses import sparse_global_pointer_crossentropy
from rofjax.models import GPLinker
from rofjax.training.tasks.base import Task, fetched_one_behind, padded_ids, sparse_pairs
from rofjax.training.tasks.text_spans import token_boundaries, windowed_batches


@dataclasses.dataclass
class RelationTask(Task):
    metric_names = ("f1", "precision", "recall", "examples")

    predicates: list[str]
    max_length: int = 128
    head_size: int = 64
    max_pairs: int = 16
    threshold: float = 0.0

    @classmethod
    def from_config(cls, config, model_config, tokenizer, labels, **options):
        return cls(model_config, tokenizer, list(labels), max_length=config.data.max_length,
                   head_size=config.data.head_size, **options)

    def __post_init__(self):
        self.model = GPLinker(self.model_config, spans=2, links=len(self.predicates), head_size=self.head_size,
                              link_tril_mask=False)
        self.predicate_index = {p: i for i, p in enumerate(self.predicates)}

    def _locate(self, text, value, starts, ends):
        position = text.find(value)
        if position < 0:
            return None
        h, t = starts.get(position), ends.get(position + len(value))
        return (h, t) if h is not None and t is not None and h <= t else None

    def encode(self, record: dict) -> dict:
        text = record["text"]
        ids, _, starts, ends = token_boundaries(self.tokenizer, text, self.max_length)
        entities = [set(), set()]
        heads = [set() for _ in self.predicates]
        tails = [set() for _ in self.predicates]
        for subject, predicate, obj in record["triples"]:
            s, o = self._locate(text, subject, starts, ends), self._locate(text, obj, starts, ends)
            if s is None or o is None:
                continue
            p = self.predicate_index[predicate]
            entities[0].add(s)
            entities[1].add(o)
            heads[p].add((s[0], o[0]))
            tails[p].add((s[1], o[1]))
        return {"input_ids": padded_ids(ids, self.max_length),
                "entity_labels": sparse_pairs(entities, self.max_pairs),
                "head_labels": sparse_pairs(heads, self.max_pairs), "tail_labels": sparse_pairs(tails, self.max_pairs)}

    def init_batch(self, batch_size: int) -> dict:
        P = len(self.predicates)
        return {"input_ids": np.ones((batch_size, self.max_length), np.int32),
                "entity_labels": np.zeros((batch_size, 2, self.max_pairs, 2), np.int32),
                "head_labels": np.zeros((batch_size, P, self.max_pairs, 2), np.int32),
                "tail_labels": np.zeros((batch_size, P, self.max_pairs, 2), np.int32)}

    def loss(self, params, batch, rng, step):
        entities, heads, tails = self.model.apply({"params": params}, batch["input_ids"], deterministic=False,
                                                  rngs={"dropout": rng})
        parts = {"entity_loss": sparse_global_pointer_crossentropy(batch["entity_labels"], entities),
                 "head_loss": sparse_global_pointer_crossentropy(batch["head_labels"], heads),
                 "tail_loss": sparse_global_pointer_crossentropy(batch["tail_labels"], tails)}
        return sum(parts.values()), parts

    def decode(self, params, records, batch_size: int) -> list[set[tuple[str, str, str]]]:
        """Per record, its `(subject, predicate, object)` triples as text; long texts in overlapping windows."""
        predict = self.jitted(self.predict)
        found: list[set] = [set() for _ in records]
        dispatched = ((predict(params, batch), chunk) for chunk, batch in
                      windowed_batches(self.tokenizer, records, self.max_length, batch_size))
        for outputs, chunk in fetched_one_behind(dispatched):
            entities, heads, tails = (x[: len(chunk)] for x in outputs)
            decoded = extract_triples_batch(entities, heads, tails, self.predicates, [len(p[1]) for p in chunk],
                                            threshold=self.threshold)
            for (index, _, offsets), triples in zip(chunk, decoded):
                text = records[index]["text"]
                span = lambda ht, offsets=offsets, text=text: text[offsets[ht[0]][0]:offsets[ht[1]][1]]
                found[index].update((span(s), p, span(o)) for s, p, o in triples)
        return found

    def evaluate(self, params, records, batch_size: int) -> dict:
        predicted = self.decode(params, records, batch_size)
        gold = [set(map(tuple, r["triples"])) for r in records]
        return {**span_prf(predicted, gold), "examples": len(records)}
