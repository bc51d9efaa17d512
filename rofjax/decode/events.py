"""GPLinker event decoding (kexue.fm 8926): arguments from GlobalPointer logits, links, per-type clique search.

Arguments are `(event_type, role, h, t)` for every class and token span whose logit exceeds the threshold
(rows and columns 0 and n−1, [CLS] and [SEP], ignored). Two arguments are linked when both their head pair
`head[min(h₁,h₂), max(h₁,h₂)]` and tail pair `tail[min(t₁,t₂), max(t₁,t₂)]` exceed the threshold. Within each
event type, every maximal clique of the link graph is one event.

The authors' search (recurse on the closed neighbourhoods of both ends of every non-adjacent pair, then drop
events that are subsets of others) returns exactly the maximal cliques: a maximal clique C of a non-complete set
S misses some w ∈ S that is non-adjacent to a member u of C, so C ⊆ N[u] and the recursion on N[u] finds it; and
every set it returns is a clique. This module finds them with Bron–Kerbosch (Tomita pivoting) on integer bitsets,
which avoids the recursion's repeated work; `tests/decode/test_events.py` checks both against each other on
random graphs and `benchmarks/decode_events.py` times them.

`extract_events_steps` returns the decode's intermediate steps (the candidate arguments and their logits, the
head and tail links between them, the cliques per event type) with the events, for showing how a result came
about; `extract_events` is that function's `events`.

When an untrained model over-predicts, `max_arguments_per_class` (16) and `max_arguments` (64) keep the
highest-scoring candidates, the clique search stops after `max_search_steps`, and the decode notes each cap that
triggered in `report`. (A DuEE sentence has a handful of arguments; the caps only bind on garbage.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

TRIGGER_ROLE = "触发词"


@dataclasses.dataclass
class DecodeReport:
    """Counts of candidates dropped by the caps, per sequence decoded."""

    capped: list[str] = dataclasses.field(default_factory=list)

    def note(self, message: str) -> None:
        self.capped.append(message)


def maximal_cliques(adjacency: np.ndarray, max_steps: int | None = None, report: DecodeReport | None = None):
    """All maximal cliques of an undirected graph (bool adjacency, diagonal ignored), each sorted.

    Bron–Kerbosch with Tomita pivoting; vertex sets are Python ints used as bitsets. Isolated vertices are
    cliques of one. Dense graphs of many vertices have exponentially many cliques: after `max_steps` search
    steps the search stops, returns what it found and notes it in `report`.
    """
    n = len(adjacency)
    neighbours = []
    for i in range(n):
        row = np.flatnonzero(adjacency[i])
        mask = 0
        for j in row:
            if j != i:
                mask |= 1 << int(j)
        neighbours.append(mask)
    cliques: list[list[int]] = []

    def bits(mask: int) -> list[int]:
        out = []
        while mask:
            low = mask & -mask
            out.append(low.bit_length() - 1)
            mask ^= low
        return out

    stack = [(0, (1 << n) - 1, 0)]               # (R, P, X) without recursion
    steps = 0
    while stack:
        steps += 1
        if max_steps is not None and steps > max_steps:
            if report is not None:
                report.note(f"clique search stopped after {max_steps} steps on {n} arguments")
            break
        r, p, x = stack.pop()
        if not p:
            if not x:
                cliques.append(bits(r))
            continue
        pivot = max(bits(p | x), key=lambda u: (p & neighbours[u]).bit_count())
        for v in bits(p & ~neighbours[pivot]):
            vbit = 1 << v
            stack.append((r | vbit, p & neighbours[v], x & neighbours[v]))
            p &= ~vbit
            x |= vbit
    return sorted(sorted(c) for c in cliques)


def sparse_flatnonzero(mask: np.ndarray) -> np.ndarray:
    """`np.flatnonzero` for a mostly-False bool array: scan it as 64-bit words, then look inside the few
    non-zero words only (about 8× less work than testing every byte)."""
    flat = np.ascontiguousarray(mask).reshape(-1)
    whole = len(flat) - len(flat) % 8
    words = np.flatnonzero(flat[:whole].view(np.uint64))
    candidates = (words[:, None] * 8 + np.arange(8)).reshape(-1)
    hits = candidates[flat[candidates]]
    if whole < len(flat):
        hits = np.concatenate([hits, whole + np.flatnonzero(flat[whole:])])
    return hits


def _candidates(argu_logits, labels, threshold, max_per_class, max_total, report):
    scores = np.asarray(argu_logits)
    n = scores.shape[-1]
    # One pass over the logits, flat indices of the few hits, then the masks ([CLS]/[SEP], h ≤ t) on those only.
    flat = sparse_flatnonzero(scores > threshold)
    classes, heads, tails = np.unravel_index(flat, scores.shape)
    keep = (heads <= tails) & (heads > 0) & (tails < n - 1)
    classes, heads, tails = classes[keep], heads[keep], tails[keep]
    values = scores[classes, heads, tails]
    if max_per_class is not None and len(classes):
        order = np.lexsort((-values, classes))
        classes, heads, tails, values = classes[order], heads[order], tails[order], values[order]
        rank = np.arange(len(classes)) - np.searchsorted(classes, classes)
        over = rank >= max_per_class
        if over.any():
            report.note(f"kept {max_per_class} of the candidates of {len(set(classes[over].tolist()))} "
                        f"class(es); dropped {int(over.sum())}")
            classes, heads, tails, values = classes[~over], heads[~over], tails[~over], values[~over]
    if max_total is not None and len(classes) > max_total:
        top = np.argsort(-values, kind="stable")[:max_total]
        report.note(f"kept the top {max_total} of {len(classes)} argument candidates")
        classes, heads, tails = classes[top], heads[top], tails[top]
    return sorted({(*labels[c], int(h), int(t)) for c, h, t in zip(classes, heads, tails)})


@dataclasses.dataclass
class EventSteps:
    """What `extract_events` computes on its way to the events of one sequence (`extract_events_steps`).

    `arguments`: the candidates kept, sorted `(event_type, role, h, t)`; `scores`: their logits; `head_linked`,
    `tail_linked`: `[k, k]` bool, whether arguments i and j are joined by a head–head / tail–tail link above the
    threshold (the diagonal is not used); `cliques`: per event type, the maximal cliques of `linked` restricted to
    that type, as indices into `arguments`; `events`: what `extract_events` returns (the cliques as arguments,
    without trigger when `require_trigger`, without subsets).
    """

    arguments: list[tuple[str, str, int, int]]
    scores: np.ndarray
    head_linked: np.ndarray
    tail_linked: np.ndarray
    cliques: dict[str, list[list[int]]]
    events: list[tuple[tuple[str, str, int, int], ...]]

    @property
    def linked(self) -> np.ndarray:
        """Arguments linked in both head and tail: the graph whose cliques are events."""
        return self.head_linked & self.tail_linked


def extract_events(argu_logits, head_logits, tail_logits, labels: Sequence[tuple[str, str]], *,
                   threshold: float = 0.0, require_trigger: bool = False, trigger_role: str = TRIGGER_ROLE,
                   max_arguments_per_class: int | None = 16, max_arguments: int | None = 64,
                   max_search_steps: int | None = 100_000,
                   report: DecodeReport | None = None) -> list[tuple[tuple[str, str, int, int], ...]]:
    """Events of one sequence: each a sorted tuple of `(event_type, role, h, t)`.

    `argu_logits` `[len(labels), n, n]`; `head_logits`, `tail_logits` `[n, n]` (or `[1, n, n]`); `labels` the
    `(event_type, role)` of each argument class. Events that are subsets of another event of the same type are
    removed; with `require_trigger`, events without a `trigger_role` argument are dropped first.
    """
    return extract_events_steps(argu_logits, head_logits, tail_logits, labels, threshold=threshold,
                                require_trigger=require_trigger, trigger_role=trigger_role,
                                max_arguments_per_class=max_arguments_per_class, max_arguments=max_arguments,
                                max_search_steps=max_search_steps, report=report).events


def extract_events_steps(argu_logits, head_logits, tail_logits, labels: Sequence[tuple[str, str]], *,
                         threshold: float = 0.0, require_trigger: bool = False, trigger_role: str = TRIGGER_ROLE,
                         max_arguments_per_class: int | None = 16, max_arguments: int | None = 64,
                         max_search_steps: int | None = 100_000,
                         report: DecodeReport | None = None) -> EventSteps:
    """`extract_events` (same arguments), returning its intermediate steps with the events (`EventSteps`)."""
    argu_logits = np.asarray(argu_logits)
    head_logits, tail_logits = np.asarray(head_logits), np.asarray(tail_logits)
    if head_logits.ndim == 3:
        head_logits = head_logits[0]
    if tail_logits.ndim == 3:
        tail_logits = tail_logits[0]
    if argu_logits.ndim != 3 or argu_logits.shape[0] != len(labels) or argu_logits.shape[1] != argu_logits.shape[2]:
        raise ValueError(f"extract_events: argu_logits must be [len(labels)={len(labels)}, n, n]; got "
                         f"{argu_logits.shape}.")
    n = argu_logits.shape[-1]
    if head_logits.shape != (n, n) or tail_logits.shape != (n, n):
        raise ValueError(f"extract_events: head_logits {head_logits.shape} and tail_logits {tail_logits.shape} "
                         f"must be [n, n] = [{n}, {n}].")
    report = report if report is not None else DecodeReport()
    argus = _candidates(argu_logits, labels, threshold, max_arguments_per_class, max_arguments, report)
    if not argus:
        empty = np.zeros((0, 0), bool)
        return EventSteps([], np.zeros(0, argu_logits.dtype), empty, empty.copy(), {}, [])
    index = {tuple(label): i for i, label in enumerate(labels)}
    h = np.array([a[2] for a in argus])
    t = np.array([a[3] for a in argus])
    scores = argu_logits[[index[a[:2]] for a in argus], h, t]
    head_linked = head_logits[np.minimum.outer(h, h), np.maximum.outer(h, h)] > threshold
    tail_linked = tail_logits[np.minimum.outer(t, t), np.maximum.outer(t, t)] > threshold
    linked = head_linked & tail_linked

    events, cliques = [], {}
    types = np.array([a[0] for a in argus], dtype=object)
    for event_type in sorted(set(types.tolist())):
        members = np.flatnonzero(types == event_type)
        found = maximal_cliques(linked[np.ix_(members, members)], max_search_steps, report)
        cliques[event_type] = [[int(members[i]) for i in clique] for clique in found]
        events.extend(tuple(argus[i] for i in clique) for clique in cliques[event_type])
    if require_trigger:
        events = [e for e in events if any(a[1] == trigger_role for a in e)]
    return EventSteps(argus, scores, head_linked, tail_linked, cliques, remove_subsets(events))


def remove_subsets(events):
    """Drop duplicate events and events contained in another event of the same type."""
    unique = sorted(set(events), key=lambda e: (-len(e), e))
    kept: list[tuple] = []
    for event in unique:
        members = set(event)
        if not any(event[0][0] == other[0][0] and members <= set(other) for other in kept):
            kept.append(event)
    return sorted(kept)


def extract_events_batch(argu_logits, head_logits, tail_logits, labels, lengths, **kwargs):
    """`extract_events` for each row of a padded batch; `lengths[i]` counts row i's tokens with [CLS] and [SEP].
    A shared `report=` collects the caps that triggered across the batch."""
    argu_logits, head_logits, tail_logits = map(np.asarray, (argu_logits, head_logits, tail_logits))
    out = []
    for i, length in enumerate(np.asarray(lengths).tolist()):
        head = head_logits[i, 0] if head_logits.ndim == 4 else head_logits[i]
        tail = tail_logits[i, 0] if tail_logits.ndim == 4 else tail_logits[i]
        out.append(extract_events(argu_logits[i, :, :length, :length], head[:length, :length],
                                  tail[:length, :length], labels, **kwargs))
    return out


def events_to_text(events, offsets, text: str):
    """Token-index events → `(event_type, role, argument text, char start)` using per-token `(start, end)`."""
    out = []
    for event in events:
        arguments = []
        for event_type, role, h, t in event:
            start, end = offsets[h][0], offsets[t][1]
            arguments.append((event_type, role, text[start:end], start))
        out.append(sorted(set(arguments)))
    return out
