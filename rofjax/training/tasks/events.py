"""GPLinker joint event extraction (kexue.fm 8926): argument spans per (event type, role), head–head and tail–tail
links, sparse ZLPR loss; evaluation decodes on the host (`rofjax.decode.events`) and scores as the authors did.

Labels are built per example and kept sparse: `[classes, P, 2]` (start, end) token pairs padded with (0, 0), which
the loss masks (`mask_zero`) — never a dense classes × n × n tensor. Arguments whose character boundaries do not
fall on token boundaries are dropped from the labels, as in the authors' scripts.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from rofjax.data.ie_formats import TRIGGER_ROLE
from rofjax.data.tokenizer import Tokenizer
from rofjax.decode.events import DecodeReport, events_to_text, extract_events_batch, remove_subsets
from rofjax.decode.metrics import gplinker_event_scores
from rofjax.losses import sparse_global_pointer_crossentropy
from rofjax.models import GPLinker, ModelConfig
from rofjax.training.tasks.text_spans import token_boundaries, windowed_batches


@dataclasses.dataclass
class EventTask:
    model_config: ModelConfig
    tokenizer: Tokenizer
    labels: list[tuple[str, str]]
    max_length: int = 128
    head_size: int = 64
    max_spans_per_class: int = 8
    max_links: int = 32
    threshold: float = 0.0
    enum_roles: dict | None = None            # DuEE-fin: (type, enumerated value) → (type, role)

    def __post_init__(self):
        self.model = GPLinker(self.model_config, spans=len(self.labels), links=1, head_size=self.head_size)
        self.label_index = {label: i for i, label in enumerate(self.labels)}

    # Host side ------------------------------------------------------------------------------------------------
    def _tokenize(self, text: str):
        return token_boundaries(self.tokenizer, text, self.max_length)

    def encode(self, record: dict) -> dict:
        ids, _, starts, ends = self._tokenize(record["text"])
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
        span_labels = np.zeros((len(self.labels), self.max_spans_per_class, 2), np.int32)
        for c, pairs in enumerate(spans):
            for p, pair in enumerate(sorted(pairs)[: self.max_spans_per_class]):
                span_labels[c, p] = pair
        link_labels = np.zeros((2, 1, self.max_links, 2), np.int32)
        for k, pairs in enumerate((heads, tails)):
            for p, pair in enumerate(sorted(pairs)[: self.max_links]):
                link_labels[k, 0, p] = pair
        input_ids = np.zeros(self.max_length, np.int32)
        input_ids[: len(ids)] = ids
        return {"input_ids": input_ids, "span_labels": span_labels, "head_labels": link_labels[0],
                "tail_labels": link_labels[1]}

    def init_batch(self, batch_size: int) -> dict:
        return {"input_ids": np.ones((batch_size, self.max_length), np.int32),
                "span_labels": np.zeros((batch_size, len(self.labels), self.max_spans_per_class, 2), np.int32),
                "head_labels": np.zeros((batch_size, 1, self.max_links, 2), np.int32),
                "tail_labels": np.zeros((batch_size, 1, self.max_links, 2), np.int32)}

    def tokens(self, batch) -> int:
        return int(np.sum(np.asarray(batch["input_ids"]) != 0))

    # Device side ----------------------------------------------------------------------------------------------
    def init_params(self, rng, batch):
        return self.model.init(rng, batch["input_ids"])["params"]

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

    def predict(self, params, input_ids):
        return self._logits(params, input_ids)

    def decode(self, params, records, batch_size: int) -> list[list[list[tuple]]]:
        """Per record, its events as sorted `(event_type, role, text, start)` lists, decoded on the host; long
        texts in overlapping windows whose events are merged (an event contained in another is dropped)."""
        if getattr(self, "_predict", None) is None:
            self._predict = jax.jit(self.predict)
        self.report = DecodeReport()
        found: list[set] = [set() for _ in records]
        for chunk, ids in windowed_batches(self.tokenizer, records, self.max_length, batch_size):
            spans, heads, tails = jax.device_get(self._predict(params, ids))
            decoded = extract_events_batch(spans[: len(chunk)], heads[: len(chunk)], tails[: len(chunk)],
                                           self.labels, [len(p[1]) for p in chunk], threshold=self.threshold,
                                           report=self.report)
            for (index, _, offsets), events in zip(chunk, decoded):
                found[index].update(tuple(e) for e in events_to_text(events, offsets, records[index]["text"]))
        return [[list(e) for e in remove_subsets(list(events))] for events in found]

    def evaluate(self, trainer, params, records, batch_size: int) -> dict:
        """Decode every record and score events and arguments (the GPLinker dev metrics)."""
        predicted = self.decode(params, records, batch_size)
        gold = [[tuple(e) for e in r["events"] or []] for r in records]
        scores = gplinker_event_scores(predicted, gold, trigger_role=TRIGGER_ROLE)
        return {"event_f1": scores["event"]["f1"], "event_precision": scores["event"]["precision"],
                "event_recall": scores["event"]["recall"], "argument_f1": scores["argument"]["f1"],
                "decode_caps_hit": len(self.report.capped), "examples": len(records)}

    def _submitted_argument(self, argument) -> tuple[str, str]:
        """(role, text); an enumerated pseudo-role on the trigger becomes (its real role, the value)."""
        event_type, role, text, _ = argument
        if self.enum_roles and (event_type, role) in self.enum_roles:
            return self.enum_roles[(event_type, role)][1], role
        return role, text

    def submission(self, record: dict, events) -> dict:
        """A DuEE submission line: events with a trigger, triggers removed, no event contained in another."""
        kept = []
        for event in sorted(events, key=len, reverse=True):
            if not any(a[1] == TRIGGER_ROLE for a in event):
                continue
            arguments = {self._submitted_argument(a) for a in event if a[1] != TRIGGER_ROLE}
            if any(event[0][0] == t and arguments <= other for t, other in kept):
                continue
            kept.append((event[0][0], arguments))
        return {"id": record["id"], "text": record["text"],
                "event_list": [{"event_type": t, "arguments": [{"role": r, "argument": a} for r, a in sorted(args)]}
                               for t, args in kept]}

    def flops_per_example(self) -> float:
        from rofjax.training.tasks.classification import encoder_forward_flops

        cfg = self.model_config
        n = self.max_length
        pointers = 2 * n * cfg.hidden_size * 2 * self.head_size * 3 + 2 * n * n * self.head_size * 3
        return 3 * (encoder_forward_flops(cfg, n) + pointers)
