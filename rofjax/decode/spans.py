"""Spans from GlobalPointer logits, on the host (numpy only): NER decoding, token → character mapping, sliding
windows and span-level P/R/F1.

A span `(label, h, t)` is predicted when `logits[label, h, t] > threshold` with h ≤ t; rows and columns of
[CLS] (0) and [SEP] (length − 1) never count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from rofjax.decode.events import DecodeReport, sparse_flatnonzero


def extract_spans(logits, *, threshold: float = 0.0, labels: Sequence | None = None, length: int | None = None,
                  max_spans: int | None = 1024, report: DecodeReport | None = None,
                  with_scores: bool = False) -> list[tuple]:
    """`[heads, n, n]` logits → sorted `(label, h, t)`; `label` is the head index or `labels[index]`.
    `with_scores`: `(label, h, t, logit)` instead."""
    logits = np.asarray(logits)
    if logits.ndim != 3 or logits.shape[1] != logits.shape[2]:
        raise ValueError(f"extract_spans expects logits [heads, n, n]; got {logits.shape}.")
    if labels is not None and len(labels) != logits.shape[0]:
        raise ValueError(f"extract_spans: {len(labels)} labels for {logits.shape[0]} heads.")
    n = logits.shape[-1] if length is None else int(length)
    logits = logits[:, :n, :n]
    flat = sparse_flatnonzero(logits > threshold)
    heads, starts, ends = np.unravel_index(flat, logits.shape)
    keep = (starts <= ends) & (starts > 0) & (ends < n - 1)
    heads, starts, ends = heads[keep], starts[keep], ends[keep]
    if max_spans is not None and len(heads) > max_spans:
        top = np.argsort(-logits[heads, starts, ends], kind="stable")[:max_spans]
        if report is not None:
            report.note(f"kept the top {max_spans} of {len(heads)} spans")
        heads, starts, ends = heads[top], starts[top], ends[top]
    names = (lambda i: labels[i]) if labels is not None else int
    if with_scores:
        return sorted((names(h), int(s), int(e), float(logits[h, s, e])) for h, s, e in zip(heads, starts, ends))
    return sorted((names(h), int(s), int(e)) for h, s, e in zip(heads, starts, ends))


def extract_spans_batch(logits, lengths, **kwargs) -> list[list[tuple]]:
    logits = np.asarray(logits)
    return [extract_spans(logits[i], length=int(length), **kwargs) for i, length in enumerate(lengths)]


def spans_to_chars(spans: Iterable[tuple], offsets: Sequence[tuple[int, int]]) -> list[tuple]:
    """Token spans → `(label, char_start, char_end)` (end exclusive) through per-token `(start, end)` offsets."""
    return sorted({(label, offsets[h][0], offsets[t][1]) for label, h, t in spans})


def windows(num_tokens: int, size: int, stride: int) -> list[tuple[int, int]]:
    """`[start, end)` token windows of `size` every `stride` tokens covering `num_tokens` (the last one flush)."""
    if size <= 0 or stride <= 0 or stride > size:
        raise ValueError(f"windows need 0 < stride ≤ size; got size={size}, stride={stride}.")
    if num_tokens <= size:
        return [(0, num_tokens)]
    starts = list(range(0, num_tokens - size, stride)) + [num_tokens - size]
    return [(s, s + size) for s in sorted(set(starts))]


def merge_window_spans(per_window: Iterable[Iterable[tuple]]) -> list[tuple]:
    """Union of `(label, char_start, char_end)` spans found in overlapping windows (already in text offsets)."""
    return sorted({span for spans in per_window for span in spans})


def span_prf(predicted: Iterable[Iterable], gold: Iterable[Iterable]) -> dict[str, float]:
    """Micro precision, recall and F1 over per-example sets of hashable items (spans, triples, events)."""
    correct = n_pred = n_gold = 0
    for p, g in zip(predicted, gold, strict=True):
        p, g = set(p), set(g)
        correct += len(p & g)
        n_pred += len(p)
        n_gold += len(g)
    precision = correct / n_pred if n_pred else 0.0
    recall = correct / n_gold if n_gold else 0.0
    f1 = 2 * correct / (n_pred + n_gold) if n_pred + n_gold else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def lexicon_baseline(train_records: Iterable[dict], records: Iterable[dict]) -> list[list[tuple]]:
    """The NER baseline of the main job: each entity string (two characters or more) of the training records,
    tagged with its most frequent type, found again in `records` by greedy longest match from left to right —
    what memorising the training entities gets. Returns `(type, start, end_exclusive)` per record."""
    counts: dict[str, dict[str, int]] = {}
    for record in train_records:
        for kind, start, end in record["entities"]:
            by_type = counts.setdefault(record["text"][start:end], {})
            by_type[kind] = by_type.get(kind, 0) + 1
    lexicon = {text: max(by_type, key=lambda k: (by_type[k], k)) for text, by_type in counts.items() if len(text) > 1}
    longest = max(map(len, lexicon), default=0)
    predicted = []
    for record in records:
        text, spans, index = record["text"], [], 0
        while index < len(text):
            for size in range(min(longest, len(text) - index), 1, -1):
                if text[index:index + size] in lexicon:
                    spans.append((lexicon[text[index:index + size]], index, index + size))
                    index += size
                    break
            else:
                index += 1
        predicted.append(spans)
    return predicted
