"""Token ↔ character bookkeeping shared by the span tasks (NER, events, relations)."""

from __future__ import annotations

from rofjax.data.tokenizer import pad_batch


def token_boundaries(tokenizer, text: str, max_length: int | None):
    """`(ids, offsets, starts, ends)`: `starts[c]` is the token starting at character c, `ends[c]` the token
    ending just before character c (exclusive end). A span whose ends are missing is not on token boundaries."""
    ids, _, offsets = tokenizer.encode(text, maxlen=max_length)
    starts, ends = {}, {}
    for index, (start, end) in enumerate(offsets):
        if end > start:
            starts.setdefault(start, index)
            ends[end] = index
    return ids, offsets, starts, ends


def text_windows(tokenizer, text: str, max_length: int, stride: int | None = None):
    """`(ids, offsets)` pieces covering the whole text: one if it fits, else overlapping windows of
    `max_length − 2` tokens every `stride` tokens (default half a window), each framed by [CLS] … [SEP]; offsets
    stay those of the whole text, so what a window finds maps straight back onto it."""
    from rofjax.decode.spans import windows

    ids, _, offsets = tokenizer.encode(text)
    if len(ids) <= max_length:
        return [(ids, offsets)]
    inner_ids, inner_offsets = ids[1:-1], offsets[1:-1]
    size = max_length - 2
    return [([tokenizer.cls_id] + inner_ids[a:b] + [tokenizer.sep_id], [(0, 0)] + inner_offsets[a:b] + [(0, 0)])
            for a, b in windows(len(inner_ids), size, stride or max(1, size // 2))]


def windowed_batches(tokenizer, records, max_length: int, batch_size: int, stride: int | None = None,
                     bucket=None):
    """Yield `(pieces, batch)` over every window of every record: `pieces` a list of `(record index, token ids,
    offsets)`, `batch["input_ids"]` their `[batch_size, length]` padded array. Without `bucket` every batch is
    `max_length` long (one shape, one compilation); with it, each window goes into the batches of its own padded
    length `bucket(len(ids))`, so what a window gives does not depend on the windows beside it."""
    pieces = [(i, ids, offsets) for i, r in enumerate(records)
              for ids, offsets in text_windows(tokenizer, r["text"], max_length, stride)]
    groups: dict[int, list] = {}
    for piece in pieces:
        groups.setdefault(max_length if bucket is None else bucket(len(piece[1])), []).append(piece)
    for length, group in sorted(groups.items()):
        for start in range(0, len(group), batch_size):
            chunk = group[start:start + batch_size]
            rows = [p[1] for p in chunk] + [[]] * (batch_size - len(chunk))
            yield chunk, {"input_ids": pad_batch(rows, length)}
