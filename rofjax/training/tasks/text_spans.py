"""Token ↔ character bookkeeping shared by the span tasks (NER, events, relations)."""

from __future__ import annotations

import numpy as np


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


def padded_ids(rows, batch_size: int, max_length: int) -> np.ndarray:
    """Token id lists → a `[batch_size, max_length]` int32 array (missing rows stay padding)."""
    out = np.zeros((batch_size, max_length), np.int32)
    for row, ids in enumerate(rows):
        out[row, : len(ids)] = ids
    return out
