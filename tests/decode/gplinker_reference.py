"""A direct port of the authors' GPLinker decoding (bojone/GPLinker duee_v1.py, as seeds-spec §1.5–1.8 describe
it), at token level. It is the yardstick the fast decoder is tested and benchmarked against."""

import itertools

import numpy as np


class DedupList(list):
    def append(self, x):
        if x not in self:
            super().append(x)


def neighbors(host, argus, links):
    results = [host]
    for argu in argus:
        if host[2:] + argu[2:] in links:
            results.append(argu)
    return sorted(results)


def clique_search(argus, links):
    Argus = DedupList()
    for i1, (_, _, h1, t1) in enumerate(argus):
        for i2, (_, _, h2, t2) in enumerate(argus):
            if i2 > i1:
                if (h1, t1, h2, t2) not in links:
                    Argus.append(neighbors(argus[i1], argus, links))
                    Argus.append(neighbors(argus[i2], argus, links))
    if Argus:
        results = DedupList()
        for A in Argus:
            for a in clique_search(A, links):
                results.append(a)
        return results
    return [list(sorted(argus))]


def isin(event_a, event_b):
    """event_a ⊆ event_b (same type, every argument contained)."""
    if event_a[0][0] != event_b[0][0]:
        return False
    return all(a in event_b for a in event_a)


def extract_events(argu_logits, head_logits, tail_logits, labels, threshold=0.0, trigger=False):
    outputs = [np.array(argu_logits, dtype=np.float64, copy=True), head_logits[None], tail_logits[None]]
    for o in outputs:
        o[:, [0, -1]] -= np.inf
        o[:, :, [0, -1]] -= np.inf
    argus = set()
    for label, h, t in zip(*np.where(outputs[0] > threshold)):
        argus.add(tuple(labels[label]) + (int(h), int(t)))
    links = set()
    for i1, (_, _, h1, t1) in enumerate(argus):
        for i2, (_, _, h2, t2) in enumerate(argus):
            if i2 > i1:
                if outputs[1][0, min(h1, h2), max(h1, h2)] > threshold:
                    if outputs[2][0, min(t1, t2), max(t1, t2)] > threshold:
                        links.add((h1, t1, h2, t2))
                        links.add((h2, t2, h1, t1))
    events = []
    for _, sub_argus in itertools.groupby(sorted(argus), key=lambda s: s[0]):
        for event in clique_search(list(sub_argus), links):
            event = sorted(set(event))                 # a host listed twice by neighbors() counts once
            if trigger and not any(a[1] == "触发词" for a in event):
                continue
            events.append(event)
    kept = []                                          # predict_to_file: drop events contained in others
    for event in sorted(events, key=len, reverse=True):
        if not any(isin(event, other) for other in kept):
            kept.append(event)
    return sorted(tuple(e) for e in kept)
