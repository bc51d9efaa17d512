"""Masked-LM pre-training with whole-word masking, dynamic masks and packed sequences.

Per document: jieba words (HMM off) → WordPiece tokens `[CLS] … [SEP]` with a flag on each word's first token.
Documents are packed first-fit into rows of `max_length` tokens; `doc_ids` (1, 2, … per row, 0 = padding) keep
attention inside each document and `positions` restart at 0 for each, so packing changes nothing a document
sees. Masking happens after packing with a fresh random draw each time an example is read (dynamic masking):
each word is chosen with probability `mask_rate` (15%); a chosen word's tokens all become [MASK] (80%), stay
(10%) or become random ids in [1, vocab) (10%) — the RoFormerV2 recipe. Targets are gathered to
`max_predictions` positions per row, so the vocabulary projection runs on the chosen tokens only.

A document longer than a row is trained on whole (`long_documents="chunk"`, the default): it is split into rows
`[CLS] … [SEP]` of at most `max_length` tokens, each ending at the last sentence end (。！？；!?;) in its second
half, else before the last word that starts in it, and each packed as a document of its own. `"cut"` keeps only
its first row, as rofjax did before chunking (a run started then resumes only with it). Evaluation reads the
first row of each document either way, so the same records give the same examples.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings

import grain
import jax.numpy as jnp
import numpy as np
import optax

from rofjax.losses import masked_lm_crossentropy
from rofjax.models import Encoder
from rofjax.models.flops import encoder_forward_flops
from rofjax.models.schedules import residual_alpha
from rofjax.nn.embedding import gather_positions
from rofjax.training.tasks.base import Task
from rofjax.training.tasks.classification import summarize_accuracy


def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


_warned_cut = False


def _warn_cut_once(record: dict, tokens: int, max_length: int) -> None:
    """Say once per process that documents are cut to a row: the rest of a long document is never trained on."""
    global _warned_cut
    if not _warned_cut:
        _warned_cut = True
        where = f" (line {record['line']})" if "line" in record else ""
        warnings.warn(f"a document{where} has {tokens} tokens; masked LM trains on its first {max_length} only, and "
                      f"so on every longer one (warned once): data.long_documents='cut'. The default, 'chunk', "
                      f"trains on all of it.", stacklevel=2)


LONG_DOCUMENTS = ("chunk", "cut")
SENTENCE_ENDS = "。！？；!?;"


class _DocumentRows(grain.experimental.FlatMapTransform):
    """A tokenised document (`MaskedLMTask.tokenized`) → its rows (`MaskedLMTask.rows`)."""

    max_fan_out = 1 << 20           # read by grain's map-dataset flat map only; a document has as many rows as it needs

    def __init__(self, task):
        self.task = task

    def flat_map(self, document):
        return self.task.rows(document["ids"].tolist(), document["starts"].tolist())


@dataclasses.dataclass
class MaskedLMTask(Task):
    metric_names = ("loss", "accuracy", "predictions")

    max_length: int = 128
    mask_rate: float = 0.15
    max_predictions: int | None = None
    whole_word: bool = True
    alpha_ramp_steps: int = 0
    max_documents: int = 32              # per packed row; 1 = unpacked rows
    pack: bool = True                    # pack documents first-fit into rows (else one document per row)
    seed: int = 0                        # of the packer and of the evaluation masks
    long_documents: str = "chunk"        # a document longer than a row: "chunk" (every row of it) or "cut" (the first)

    @classmethod
    def from_config(cls, config, model_config, tokenizer, labels, **options):
        data = config.data
        return cls(model_config, tokenizer, max_length=data.max_length, mask_rate=data.mask_rate,
                   alpha_ramp_steps=config.train.alpha_ramp_steps,
                   max_documents=data.max_documents if data.pack else 1, pack=data.pack, seed=config.seed,
                   long_documents=data.get("long_documents", "chunk"))

    def __post_init__(self):
        self.model = Encoder(self.model_config)
        if self.max_predictions is None:
            self.max_predictions = max(1, math.ceil(self.max_length * self.mask_rate * 1.34))
        self._special = np.array([self.tokenizer.pad_id, self.tokenizer.cls_id, self.tokenizer.sep_id])
        if self.long_documents not in LONG_DOCUMENTS:
            raise ValueError(f"config.data.long_documents={self.long_documents!r}; expected one of {LONG_DOCUMENTS}.")
        if self.max_length < 3:
            raise ValueError(f"config.data.max_length={self.max_length}; expected ≥ 3 ([CLS], a token, [SEP]).")
        self._sentence_ends = {self.tokenizer.vocab[mark] for mark in SENTENCE_ENDS if mark in self.tokenizer.vocab}

    # Host side ------------------------------------------------------------------------------------------------
    def _tokens(self, record: dict) -> tuple[list[int], list[bool]]:
        text = record["text"]
        text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
        words = _jieba().lcut(text, HMM=False) if self.whole_word else list(text)
        words = [w for w in words if w.strip()] or ["[UNK]"]
        return self.tokenizer.word_starts(words)

    @staticmethod
    def _row(ids, starts) -> dict:
        return {"input_ids": np.asarray(ids, np.int32), "word_starts": np.asarray(starts, np.int32)}

    def encode_document(self, record: dict) -> dict:
        """The first row of a document: all of it when it fits, else its first `max_length - 1` tokens and [SEP]."""
        ids, starts = self._tokens(record)
        if len(ids) > self.max_length:
            if self.long_documents == "cut":
                _warn_cut_once(record, len(ids), self.max_length)
            ids, starts = self.tokenizer.cut(ids, starts, self.max_length)
        return self._row(ids, starts)

    def tokenized(self, record: dict) -> dict:
        """A document's ids and word-start flags, whole (the work of a training pipeline's read threads)."""
        ids, starts = self._tokens(record)
        return {"ids": np.asarray(ids, np.int32), "starts": np.asarray(starts, bool)}

    def document_rows(self, record: dict) -> list[dict]:
        """Every row a document trains on: one when it fits or `long_documents="cut"`, else its chunks."""
        if self.long_documents == "cut":
            return [self.encode_document(record)]
        return self.rows(*self._tokens(record))

    def rows(self, ids: list[int], starts: list[bool]) -> list[dict]:
        """`[CLS] … [SEP]` ids and word-start flags → rows of at most `max_length` tokens (see the module's doc)."""
        if len(ids) <= self.max_length:
            return [self._row(ids, starts)]
        body, body_starts = ids[1:-1], starts[1:-1]               # without the document's [CLS] and [SEP]
        width, rows, begin = self.max_length - 2, [], 0
        while begin < len(body):
            end = len(body) if len(body) - begin <= width else self._chunk_end(body, body_starts, begin, width)
            rows.append(self._row([self.tokenizer.cls_id, *body[begin:end], self.tokenizer.sep_id],
                                  [False, *body_starts[begin:end], False]))
            begin = end
        return rows

    def _chunk_end(self, body: list[int], starts: list[bool], begin: int, width: int) -> int:
        """Where a chunk of `body` from `begin` ends (exclusive): after the last sentence end in the second half of
        its `width` tokens, else before the last word starting in it, else at `width` tokens (one long word)."""
        limit = begin + width
        for end in range(limit, begin + width // 2, -1):
            if body[end - 1] in self._sentence_ends:
                return end
        for end in range(limit, begin, -1):
            if starts[end]:
                return end
        return limit

    def unpacked(self, example: dict) -> dict:
        """A single document padded to `max_length`, in the packed layout (doc id 1, positions 0…)."""
        n = len(example["input_ids"])
        out = {}
        for key in ("input_ids", "word_starts"):
            row = np.zeros(self.max_length, np.int32)
            row[:n] = example[key]
            out[key] = row
        out["input_ids_segment_ids"] = (np.arange(self.max_length) < n).astype(np.int32)
        out["input_ids_positions"] = np.where(np.arange(self.max_length) < n, np.arange(self.max_length), 0)
        return out

    def training_examples(self, records: grain.MapDataset, *, batch_size: int, seed: int) -> grain.IterDataset:
        """Documents → (packed) rows → freshly masked examples each time a row is read."""
        if self.long_documents == "cut":
            documents = records.map(self.encode_document).to_iter_dataset()
        else:
            # Tokenising stays in the map (grain's read threads, as with "cut"); the split into rows follows it.
            documents = grain.experimental.FlatMapIterDataset(records.map(self.tokenized).to_iter_dataset(),
                                                              _DocumentRows(self))
        if self.pack:
            rows = grain.experimental.FirstFitPackIterDataset(
                documents, length_struct={"input_ids": self.max_length, "word_starts": self.max_length},
                num_packing_bins=max(2, batch_size), seed=seed, max_sequences_per_bin=self.max_documents)
        else:
            rows = documents.map(self.unpacked)
        return rows.random_map(self.mask, seed=seed)

    def eval_example(self, index: int, record: dict) -> dict:
        """One unpacked document with masks drawn from (seed, index): the same masks at every evaluation."""
        return self.mask(self.unpacked(self.encode_document(record)), np.random.default_rng([self.seed, index]))

    def mask(self, packed: dict, rng: np.random.Generator) -> dict:
        ids = np.asarray(packed["input_ids"], np.int32)
        starts = np.asarray(packed["word_starts"], np.int32).astype(bool)
        doc_ids = np.asarray(packed["input_ids_segment_ids"], np.int32)
        positions = np.asarray(packed["input_ids_positions"], np.int32)
        maskable = ~np.isin(ids, self._special)
        # Word index of every maskable token: a word starts at a flagged token (or after a special token).
        begins = maskable & (starts | ~np.concatenate([[False], maskable[:-1]]))
        word = np.cumsum(begins) - 1
        n_words = int(begins.sum())
        inputs, labels = ids.copy(), np.zeros_like(ids)
        if n_words:
            chosen = rng.random(n_words) < self.mask_rate
            action = rng.random(n_words)                           # < .8 mask, < .9 keep, else random
            selected = maskable & chosen[np.clip(word, 0, None)]
            how = action[np.clip(word, 0, None)]
            random_ids = rng.integers(1, self.tokenizer.vocab_size, size=ids.shape)
            inputs = np.where(selected & (how < 0.8), self.tokenizer.mask_id,
                              np.where(selected & (how >= 0.9), random_ids, ids)).astype(np.int32)
            labels = np.where(selected, ids, 0)
        targets = np.flatnonzero(labels)
        if len(targets) > self.max_predictions:                # over budget: leave the extra tokens untouched
            dropped = targets[self.max_predictions:]
            inputs[dropped], labels[dropped] = ids[dropped], 0
            targets = targets[: self.max_predictions]
        P = self.max_predictions
        masked_positions = np.zeros(P, np.int32)
        masked_labels = np.zeros(P, np.int32)
        masked_weights = np.zeros(P, np.float32)
        masked_positions[: len(targets)] = targets
        masked_labels[: len(targets)] = ids[targets]
        masked_weights[: len(targets)] = 1.0
        return {"input_ids": inputs, "doc_ids": doc_ids, "positions": positions,
                "masked_positions": masked_positions, "masked_labels": masked_labels,
                "masked_weights": masked_weights}

    def init_batch(self, batch_size: int) -> dict:
        L, P = self.max_length, self.max_predictions
        return {"input_ids": np.ones((batch_size, L), np.int32), "doc_ids": np.ones((batch_size, L), np.int32),
                "positions": np.tile(np.arange(L, dtype=np.int32), (batch_size, 1)),
                "masked_positions": np.zeros((batch_size, P), np.int32),
                "masked_labels": np.zeros((batch_size, P), np.int32),
                "masked_weights": np.zeros((batch_size, P), np.float32)}

    def tokens(self, batch) -> int:
        return int(np.sum(np.asarray(batch["doc_ids"]) != 0))

    # Device side ----------------------------------------------------------------------------------------------
    def init_params(self, rng, batch):
        return self.model.init(rng, batch["input_ids"], method=Encoder.masked_lm)["params"]

    def _logits(self, params, batch, *, rng=None, step=None):
        deterministic = rng is None
        kwargs = {}
        if self.model_config.residual_mode == "alpha" and step is not None:
            kwargs["residual_alpha"] = residual_alpha(step, self.alpha_ramp_steps)
        rngs = None if deterministic else {"dropout": rng}
        if self.max_documents == 1:      # one document per row: a plain key mask (FLASH chunking accepts it)
            kwargs["attention_mask"] = batch["doc_ids"] > 0
        else:
            kwargs.update(doc_ids=batch["doc_ids"], max_documents=self.max_documents)
        hidden = self.model.apply({"params": params}, batch["input_ids"], positions=batch["positions"],
                                  deterministic=deterministic, rngs=rngs, **kwargs)
        picked = gather_positions(hidden, batch["masked_positions"], method=self.model_config.embedding_lookup)
        return self.model.apply({"params": params}, picked, deterministic=deterministic, rngs=rngs,
                                method=Encoder.mlm_logits)

    def loss(self, params, batch, rng, step):
        logits = self._logits(params, batch, rng=rng, step=step)
        labels, weights = batch["masked_labels"], batch["masked_weights"]
        loss = masked_lm_crossentropy(labels, logits, weights)
        correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
        return loss, {"accuracy": jnp.sum(correct * weights) / jnp.maximum(jnp.sum(weights), 1e-7)}

    def eval_sums(self, params, batch):
        logits = self._logits(params, batch)
        labels = batch["masked_labels"]
        weights = batch["masked_weights"] * batch["weights"][:, None]          # padding rows count for nothing
        ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
        correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
        return {"loss": jnp.sum(ce * weights), "correct": jnp.sum(correct * weights), "count": jnp.sum(weights)}

    def summarize(self, sums: dict) -> dict:
        return summarize_accuracy(sums, count_name="predictions")

    def flops_per_example(self) -> float:
        cfg = self.model_config
        head = 2 * self.max_predictions * cfg.resolved_embedding_size * cfg.vocab_size
        return 3 * (encoder_forward_flops(cfg, self.max_length) + head)
