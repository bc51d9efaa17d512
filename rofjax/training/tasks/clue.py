"""The 11 CLUE tasks as the RoFormerV2 / GAU-α CLUE scripts pose them (seeds-spec §3.5).

* iflytek, tnews, afqmc, cmnli, ocnli, wsc, csl — `ClassificationTask` (`rofjax.training.tasks.classification`):
  `[CLS] text [SEP] (pair [SEP])` with every segment id 0, [CLS] vector → Dense(labels), cross-entropy, accuracy.
* c3 — `MultipleChoiceTask`: `[CLS] passage [SEP] question [SEP] choice [SEP]` per choice (padded to 4 with
  "无效答案"), Dense(1) per [CLS], cross-entropy over the choices.
* chid — `ChidTask`: `[CLS] left [SEP] candidate [SEP] right [SEP]` per candidate with the text cut around the
  blank; dev blanks of one passage are assigned candidates jointly (Hungarian, no candidate twice).
* cmrc2018 — `ReadingComprehensionTask`: `[CLS] question [SEP] context window [SEP]` windows every `doc_stride`
  tokens, GlobalPointer(heads=1, no bias) over positions, the question masked out, softmax over all (start, end)
  cells with (0, 0) for a window without the answer; the best cell over a question's windows answers it.
* cluener — `NERTask` with Efficient GlobalPointer (no bias), in `rofjax.training.tasks.ner`.

The submission files of the test splits are written by the datasets (`rofjax.data.datasets`), from what each
task's `decode` returns.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rofjax.data.readers import clue
from rofjax.decode.metrics import cmrc2018_scores
from rofjax.models import MultipleChoice, SpanClassifier
from rofjax.training.tasks.base import Task, padded_ids
from rofjax.training.tasks.classification import summarize_accuracy, weighted_loss_and_accuracy, weighted_sums


def _require_label(record: dict, task: str) -> int:
    label = int(record["label"])
    if label < 0:
        raise ValueError(f"{task} record {record.get('id')} has no label; training and evaluation need the "
                         f"labelled train/dev files.")
    return label


@dataclasses.dataclass
class MultipleChoiceTask(Task):
    """c3: one score per choice from the [CLS] vector of `[CLS] passage [SEP] question [SEP] choice [SEP]`."""

    num_choices: int = 4
    max_length: int = 512
    clue_task: str = "c3"
    predict_keys = ("input_ids",)
    metric_names = ("loss", "accuracy", "examples")

    @classmethod
    def from_config(cls, config, model_config, tokenizer, labels, **options):
        return cls(model_config, tokenizer, max_length=config.data.max_length, **options)

    def __post_init__(self):
        self.model = MultipleChoice(self.model_config)

    def context(self, record: dict) -> list[list[int]]:
        """The token ids every choice shares, tokenised once per example."""
        return [self.tokenizer.encode_plain(record["passage"])[0], self.tokenizer.encode_plain(record["question"])[0]]

    def pieces(self, record: dict, choice: str, context: list[list[int]] | None = None) -> list[int]:
        passage, question = context or self.context(record)
        return self.tokenizer.join_pieces([passage, question, self.tokenizer.encode_plain(choice)[0]],
                                          maxlen=self.max_length)

    def choices(self, record: dict) -> list[str]:
        options = list(record["choices"])
        if len(options) > self.num_choices:
            raise ValueError(f"{self.clue_task} record {record['id']} has {len(options)} choices; the task takes "
                             f"{self.num_choices}.")
        return options + [clue.C3_PADDING_CHOICE] * (self.num_choices - len(options))

    def _encode(self, record: dict, label: int) -> dict:
        context = self.context(record)
        rows = [self.pieces(record, choice, context) for choice in self.choices(record)]
        return {"input_ids": np.stack([padded_ids(row, self.max_length) for row in rows]),
                "labels": np.int32(label), "weights": np.float32(1.0)}

    def encode(self, record: dict) -> dict:
        return self._encode(record, _require_label(record, self.clue_task))

    def init_batch(self, batch_size: int) -> dict:
        return {"input_ids": np.ones((batch_size, self.num_choices, self.max_length), np.int32),
                "labels": np.zeros((batch_size,), np.int32), "weights": np.ones((batch_size,), np.float32)}

    def _scores(self, params, batch, rng=None):
        deterministic = rng is None
        return self.model.apply({"params": params}, batch["input_ids"], deterministic=deterministic,
                                rngs=None if deterministic else {"dropout": rng})

    def loss(self, params, batch, rng, step):
        return weighted_loss_and_accuracy(self._scores(params, batch, rng), batch)

    def eval_sums(self, params, batch):
        return weighted_sums(self._scores(params, batch), batch)

    def summarize(self, sums: dict) -> dict:
        return summarize_accuracy(sums)

    def predict(self, params, batch):
        return jax.nn.log_softmax(self._scores(params, batch), -1)

    def decode(self, params, records, batch_size: int) -> list[int]:
        scores = self.predict_all(params, [self._encode(r, 0) for r in records], batch_size)
        return [int(np.argmax(s[: len(r["choices"])])) for s, r in zip(scores, records)]

    def flops_per_example(self) -> float:
        return self.num_choices * super().flops_per_example()


@dataclasses.dataclass
class ChidTask(MultipleChoiceTask):
    """chid: `[CLS] left [SEP] candidate [SEP] right [SEP]`, the text around the blank cut to fit; a passage's
    blanks get distinct candidates by a maximum-likelihood assignment (Hungarian) when decoding."""

    num_choices: int = 10
    max_length: int = 64

    metric_names = ("accuracy", "accuracy_independent", "examples")
    clue_task: str = "chid"

    def choices(self, record: dict) -> list[str]:
        options = list(record["candidates"])
        if len(options) > self.num_choices:
            raise ValueError(f"chid blank {record['id']} has {len(options)} candidates; the task takes "
                             f"{self.num_choices}.")
        return options + [clue.CHID_OTHER_BLANK] * (self.num_choices - len(options))

    def context(self, record: dict) -> list[list[int]]:
        return [self.tokenizer.encode_plain(record["left"])[0], self.tokenizer.encode_plain(record["right"])[0]]

    def pieces(self, record: dict, choice: str, context: list[list[int]] | None = None) -> list[int]:
        left, right = context or self.context(record)
        middle, _ = self.tokenizer.encode_plain(choice)
        room = max(self.max_length - 4 - len(middle), 0)
        keep_left = min(len(left), max(room // 2, room - len(right)))
        keep_right = min(len(right), room - keep_left)
        left = left[len(left) - keep_left:] if keep_left else []
        ids = [self.tokenizer.cls_id] + left + [self.tokenizer.sep_id] + middle + [self.tokenizer.sep_id]
        ids += right[:keep_right] + [self.tokenizer.sep_id]
        return ids[: self.max_length]

    def decode(self, params, records, batch_size: int) -> list[int]:
        return self.assign(records, self.predict_all(params, [self._encode(r, 0) for r in records], batch_size))

    @staticmethod
    def assign(records, scores) -> list[int]:
        """Per blank, its candidate: the assignment of distinct candidates to a passage's blanks with the largest
        total log-probability (scipy's Hungarian solver)."""
        from scipy.optimize import linear_sum_assignment

        passages: dict[int, list[int]] = {}
        for index, record in enumerate(records):
            passages.setdefault(int(record["passage"]), []).append(index)
        chosen = [0] * len(records)
        for members in passages.values():
            count = len(records[members[0]]["candidates"])
            block = np.stack([scores[i][:count] for i in members])
            if len(members) <= count:
                rows, cols = linear_sum_assignment(-block)
            else:                                           # more blanks than candidates: no assignment exists
                rows, cols = np.arange(len(members)), np.argmax(block, -1)
            for row, col in zip(rows, cols):
                chosen[members[row]] = int(col)
        return chosen

    def evaluate(self, params, records, batch_size: int) -> dict:
        records = list(records)
        for record in records:
            _require_label(record, "chid")
        scores = self.predict_all(params, [self._encode(r, 0) for r in records], batch_size)
        assigned = self.assign(records, scores)
        independent = [int(np.argmax(s[: len(r["candidates"])])) for s, r in zip(scores, records)]
        gold = [int(r["label"]) for r in records]
        count = max(len(records), 1)
        return {"accuracy": sum(a == g for a, g in zip(assigned, gold)) / count,
                "accuracy_independent": sum(a == g for a, g in zip(independent, gold)) / count,
                "examples": len(records)}

@dataclasses.dataclass
class ReadingComprehensionTask(Task):
    """cmrc2018 span extraction with a one-head GlobalPointer over `[CLS] question [SEP] window [SEP]`."""

    max_length: int = 512
    doc_stride: int = 128
    max_question_length: int = 64
    head_size: int = 64
    predict_keys = ("input_ids", "span_mask")
    expands_records = True
    metric_names = ("em", "f1", "examples")

    @classmethod
    def from_config(cls, config, model_config, tokenizer, labels, **options):
        return cls(model_config, tokenizer, max_length=config.data.max_length, doc_stride=config.data.doc_stride,
                   head_size=config.data.head_size, **options)

    def __post_init__(self):
        self.model = SpanClassifier(self.model_config, heads=1, head_size=self.head_size, efficient=False,
                                    use_bias=False, head_initializer="encoder")
        if self.max_length < 16:
            raise ValueError(f"cmrc2018 max_length={self.max_length} leaves no room for question and context.")
        # A long question may take at most a third of the window; the rest is context.
        self.question_tokens = min(self.max_question_length, self.max_length // 3)

    def windows(self, record: dict) -> list[dict]:
        """Every window of a question: ids, the positions a span may use, the token → character map and, when
        the record has answers, the (start, end) cell of its first answer or (0, 0)."""
        from rofjax.decode.spans import windows

        question, _ = self.tokenizer.encode_plain(record["question"])
        question = question[: self.question_tokens]
        context, offsets = self.tokenizer.encode_plain(record["context"])
        size = self.max_length - len(question) - 3
        prefix = [self.tokenizer.cls_id] + question + [self.tokenizer.sep_id]
        answer = None
        if record.get("answers"):
            start = record["answer_starts"][0]
            end = start + len(record["answers"][0])
            covering = [t for t, (a, b) in enumerate(offsets) if b > start and a < end]
            answer = (covering[0], covering[-1]) if covering else None
        out = []
        for a, b in windows(max(len(context), 1), size, min(self.doc_stride, size)):
            ids = prefix + context[a:b] + [self.tokenizer.sep_id]
            mask = np.zeros(self.max_length, bool)
            mask[0] = True                                   # (0, 0): "the answer is not in this window"
            mask[len(prefix):len(prefix) + b - a] = True
            cell = (0, 0)
            if answer is not None and a <= answer[0] and answer[1] < b:
                cell = (answer[0] - a + len(prefix), answer[1] - a + len(prefix))
            out.append({"input_ids": padded_ids(ids, self.max_length), "span_mask": mask, "labels": np.int32(cell[0] * self.max_length
                                                                                       + cell[1]),
                        "token_offsets": [None] * len(prefix) + list(offsets[a:b])})
        return out

    def expand(self, record: dict) -> list[dict]:
        if not record.get("answers"):
            raise ValueError(f"cmrc2018 question {record['id']} has no answer; training needs train.json/dev.json.")
        return [{k: v for k, v in w.items() if k != "token_offsets"} for w in self.windows(record)]

    def encode(self, window: dict) -> dict:
        return {"input_ids": window["input_ids"], "span_mask": window["span_mask"], "labels": window["labels"]}

    def init_batch(self, batch_size: int) -> dict:
        return {"input_ids": np.ones((batch_size, self.max_length), np.int32),
                "span_mask": np.ones((batch_size, self.max_length), bool),
                "labels": np.zeros((batch_size,), np.int32)}

    def init_params(self, rng, batch):
        return self.model.init(rng, batch["input_ids"], span_mask=batch["span_mask"])["params"]

    def _flat_logits(self, params, batch, rng=None):
        deterministic = rng is None
        logits = self.model.apply({"params": params}, batch["input_ids"], span_mask=batch["span_mask"],
                                  deterministic=deterministic, rngs=None if deterministic else {"dropout": rng})
        return logits[:, 0].reshape(logits.shape[0], -1)

    def loss(self, params, batch, rng, step):
        logits = self._flat_logits(params, batch, rng)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])
        correct = (jnp.argmax(logits, -1) == batch["labels"]).astype(jnp.float32)
        return jnp.mean(ce), {"cell_accuracy": jnp.mean(correct)}

    def predict(self, params, batch):
        """Per window: the best (start, end) cell other than (0, 0) and its probability."""
        log_probs = jax.nn.log_softmax(self._flat_logits(params, batch), -1)
        log_probs = log_probs.at[:, 0].set(-jnp.inf)
        best = jnp.argmax(log_probs, -1)
        return jnp.stack([best.astype(jnp.float32), jnp.take_along_axis(log_probs, best[:, None], -1)[:, 0]], -1)

    def decode(self, params, records, batch_size: int) -> list[str]:
        pieces, owners = [], []
        for index, record in enumerate(records):
            for window in self.windows({**record, "answers": []}):
                pieces.append(window)
                owners.append(index)
        found = self.predict_all(params, pieces, batch_size)
        best: dict[int, tuple[float, str]] = {}
        for window, owner, (cell, score) in zip(pieces, owners, found):
            start, end = divmod(int(cell), self.max_length)
            offsets = window["token_offsets"]
            if not (start < len(offsets) and end < len(offsets) and offsets[start] and offsets[end]):
                continue
            text = records[owner]["context"][offsets[start][0]:offsets[end][1]]
            if owner not in best or score > best[owner][0]:
                best[owner] = (float(score), text)
        return [best.get(i, (0.0, ""))[1] for i in range(len(records))]

    def evaluate(self, params, records, batch_size: int) -> dict:
        records = list(records)
        answers = self.decode(params, records, batch_size)
        scores = cmrc2018_scores({r["id"]: a for r, a in zip(records, answers)},
                                 {r["id"]: r["answers"] for r in records})
        return {"em": scores["em"], "f1": scores["f1"], "examples": len(records)}

