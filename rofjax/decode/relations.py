"""GPLinker relation decoding (kexue.fm 8888), on the host (numpy only).

Subjects and objects are spans of the entity pointer's heads 0 and 1; a triple `(s, p, o)` is predicted when
`head[p, s_h, o_h] > threshold` and `tail[p, s_t, o_t] > threshold` — all subject × object × predicate
combinations tested at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rofjax.decode.events import DecodeReport
from rofjax.decode.spans import extract_spans


def extract_triples(entity_logits, head_logits, tail_logits, predicates: Sequence, *, threshold: float = 0.0,
                    length: int | None = None, max_entities: int | None = 256,
                    report: DecodeReport | None = None) -> list[tuple]:
    """`entity_logits` `[2, n, n]`, `head_logits`/`tail_logits` `[len(predicates), n, n]` → sorted
    `((s_h, s_t), predicate, (o_h, o_t))`."""
    entity_logits, head_logits, tail_logits = map(np.asarray, (entity_logits, head_logits, tail_logits))
    n = entity_logits.shape[-1]
    if entity_logits.shape[:1] != (2,) or head_logits.shape != (len(predicates), n, n) or \
            tail_logits.shape != head_logits.shape:
        raise ValueError(f"extract_triples: entity_logits must be [2, n, n] and head/tail_logits "
                         f"[{len(predicates)}, n, n]; got {entity_logits.shape}, {head_logits.shape}, "
                         f"{tail_logits.shape}.")
    spans = extract_spans(entity_logits, threshold=threshold, length=length, max_spans=max_entities,
                          report=report)
    subjects = np.array([(h, t) for k, h, t in spans if k == 0], dtype=np.int64).reshape(-1, 2)
    objects = np.array([(h, t) for k, h, t in spans if k == 1], dtype=np.int64).reshape(-1, 2)
    if not len(subjects) or not len(objects):
        return []
    heads = head_logits[:, subjects[:, 0][:, None], objects[:, 0][None, :]] > threshold     # [P, S, O]
    tails = tail_logits[:, subjects[:, 1][:, None], objects[:, 1][None, :]] > threshold
    p, s, o = np.nonzero(heads & tails)
    return sorted((tuple(map(int, subjects[j])), predicates[i], tuple(map(int, objects[k])))
                  for i, j, k in zip(p, s, o))


def extract_triples_batch(entity_logits, head_logits, tail_logits, predicates, lengths, **kwargs):
    return [extract_triples(entity_logits[i], head_logits[i], tail_logits[i], predicates, length=int(length),
                            **kwargs) for i, length in enumerate(lengths)]
