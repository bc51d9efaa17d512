import itertools

import numpy as np
import pytest

from rofjax.decode.events import DecodeReport, extract_events, extract_events_batch, maximal_cliques
from tests.decode import gplinker_reference as ref

NEG, POS = -5.0, 5.0


def _logits(n, labels, arguments, edges, diagonal_links=()):
    """Logits whose decoding is known: `arguments` {(label index, h, t)}, `edges` pairs of arguments."""
    argu = np.full((len(labels), n, n), NEG)
    head = np.full((n, n), NEG)
    tail = np.full((n, n), NEG)
    for label, h, t in arguments:
        argu[label, h, t] = POS
    for (_, h1, t1), (_, h2, t2) in edges:
        head[min(h1, h2), max(h1, h2)] = POS
        tail[min(t1, t2), max(t1, t2)] = POS
    for h, t in diagonal_links:
        head[h, h] = POS
        tail[t, t] = POS
    return argu, head, tail


def test_the_post_example_two_events_sharing_d():
    labels = [("事件", role) for role in "ABCDEFGH"]
    nodes = {name: (i, i + 1, i + 1) for i, name in enumerate("ABCDEFGH")}
    edges = [(nodes[a], nodes[b]) for group in ("ABCD", "DEFGH") for a, b in itertools.combinations(group, 2)]
    argu, head, tail = _logits(10, labels, nodes.values(), edges)
    events = extract_events(argu, head, tail, labels)
    as_roles = sorted("".join(a[1] for a in e) for e in events)
    assert as_roles == ["ABCD", "DEFGH"]
    assert events == ref.extract_events(argu, head, tail, labels)


def test_two_prison_events_share_one_trigger():
    text = "主要成员程杰、王绍伟被法院一审判处有期徒刑22年和20年。"
    labels = [("司法行为-入狱", "触发词"), ("司法行为-入狱", "入狱者"), ("司法行为-入狱", "刑期")]
    span = {w: (text.index(w) + 1, text.index(w) + len(w)) for w in ("有期徒刑", "程杰", "王绍伟", "22年", "20年")}
    trigger, cheng, wang = (0, *span["有期徒刑"]), (1, *span["程杰"]), (1, *span["王绍伟"])
    years22, years20 = (2, *span["22年"]), (2, *span["20年"])
    edges = [(trigger, cheng), (trigger, years22), (cheng, years22), (trigger, wang), (trigger, years20),
             (wang, years20)]
    argu, head, tail = _logits(len(text) + 2, labels, [trigger, cheng, wang, years22, years20], edges)
    events = extract_events(argu, head, tail, labels, require_trigger=True)
    readable = sorted(sorted((a[1], text[a[2] - 1:a[3]]) for a in e) for e in events)
    assert readable == sorted([[("入狱者", "程杰"), ("刑期", "22年"), ("触发词", "有期徒刑")],
                               [("入狱者", "王绍伟"), ("刑期", "20年"), ("触发词", "有期徒刑")]])
    assert events == ref.extract_events(argu, head, tail, labels, trigger=True)


@pytest.mark.parametrize("diagonal", [True, False])
def test_one_span_with_two_roles(diagonal):
    labels = [("收购", "触发词"), ("收购", "收购方"), ("收购", "被收购方")]
    trigger, as_buyer, as_target = (0, 1, 2), (1, 4, 6), (2, 4, 6)
    edges = [(trigger, as_buyer)]                       # the same cells link the trigger to both roles
    argu, head, tail = _logits(9, labels, [trigger, as_buyer, as_target], edges,
                               diagonal_links=[(4, 6)] if diagonal else [])
    events = extract_events(argu, head, tail, labels)
    roles = sorted(tuple(a[1] for a in e) for e in events)
    if diagonal:                                        # the two roles of one span are linked: one event
        assert roles == [("收购方", "被收购方", "触发词")]
    else:
        assert roles == [("收购方", "触发词"), ("被收购方", "触发词")]
    assert events == ref.extract_events(argu, head, tail, labels)


def test_maximal_cliques_equal_the_reference_search_on_random_graphs():
    rng = np.random.default_rng(8926)
    for trial in range(400):
        n = int(rng.integers(1, 11))
        density = rng.uniform(0.2, 0.95)
        upper = np.triu(rng.random((n, n)) < density, 1)
        adjacency = upper | upper.T
        nodes = [("t", "r", i, i) for i in range(n)]
        links = {(i, i, j, j) for i in range(n) for j in range(n) if adjacency[i, j]}
        expected = [tuple(e) for e in ref.clique_search(nodes, links)]
        kept = []
        for event in sorted({tuple(sorted(set(e))) for e in expected}, key=len, reverse=True):
            if not any(set(event) <= set(other) for other in kept):
                kept.append(event)
        got = [tuple(nodes[i] for i in c) for c in maximal_cliques(adjacency)]
        assert sorted(got) == sorted(kept), (trial, adjacency.astype(int))


@pytest.mark.parametrize("trials", [20, pytest.param(150, marks=pytest.mark.slow)])
def test_full_decoder_equals_the_reference_on_random_logits(trials):
    rng = np.random.default_rng(0)
    labels = [(f"类型{k}", role) for k in range(3) for role in ("触发词", "甲", "乙", "丙")]
    for trial in range(trials):
        n = int(rng.integers(4, 14))
        argu = rng.normal(-2.0, 1.5, size=(len(labels), n, n))
        argu = np.where(np.triu(np.ones((n, n), bool)), argu, -np.inf)
        head = rng.normal(0.3, 1.0, size=(n, n))
        tail = rng.normal(0.3, 1.0, size=(n, n))
        for require in (False, True):
            got = extract_events(argu, head, tail, labels, require_trigger=require, max_arguments_per_class=None,
                                 max_arguments=None)
            assert got == ref.extract_events(argu, head, tail, labels, trigger=require), trial


def test_caps_bound_an_over_predicting_model_and_say_so():
    labels = [("类型", "甲"), ("类型", "乙")]
    n = 40
    argu = np.full((2, n, n), 1.0)
    head = np.full((n, n), 1.0)
    tail = np.full((n, n), -1.0)
    report = DecodeReport()
    events = extract_events(argu, head, tail, labels, max_arguments_per_class=5, max_arguments=8, report=report)
    assert sum(len(e) for e in events) <= 8 and len(report.capped) == 2


def test_batch_decoding_uses_each_rows_length():
    labels = [("类型", "触发词"), ("类型", "甲")]
    argu, head, tail = _logits(6, labels, [(0, 1, 1), (1, 2, 3)], [((0, 1, 1), (1, 2, 3))])
    pad = 3
    big = lambda a: np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, pad), (0, pad)], constant_values=POS)
    batch = extract_events_batch(np.stack([big(argu)] * 2), np.stack([big(head)] * 2), np.stack([big(tail)] * 2),
                                 labels, lengths=[6, 6])
    assert batch[0] == batch[1] == extract_events(argu, head, tail, labels)
    with pytest.raises(ValueError, match=r"argu_logits must be \[len\(labels\)=2, n, n\]"):
        extract_events(argu[:1], head, tail, labels)


def test_sparse_flatnonzero_matches_numpy():
    from rofjax.decode.events import sparse_flatnonzero

    rng = np.random.default_rng(1)
    for size in (0, 1, 7, 8, 9, 64, 1001):
        for density in (0.0, 0.01, 0.5, 1.0):
            mask = rng.random(size) < density
            np.testing.assert_array_equal(sparse_flatnonzero(mask), np.flatnonzero(mask))
    cube = rng.random((3, 5, 7)) < 0.1
    np.testing.assert_array_equal(sparse_flatnonzero(cube), np.flatnonzero(cube))


def test_dense_garbage_stays_bounded():
    """An untrained model: every logit positive. The caps keep the decode fast and say they triggered."""
    import time

    labels = [("类型", f"角色{i}") for i in range(20)]
    n = 64
    rng = np.random.default_rng(0)
    argu = rng.normal(1.0, 1.0, size=(20, n, n))
    head = rng.normal(0.2, 1.0, size=(n, n))
    tail = rng.normal(0.2, 1.0, size=(n, n))
    report = DecodeReport()
    start = time.perf_counter()
    extract_events(argu, head, tail, labels, report=report)
    assert time.perf_counter() - start < 20 and report.capped


def test_steps_show_the_arguments_links_and_cliques_behind_the_events():
    from rofjax.decode.events import extract_events_steps

    text = "主要成员程杰、王绍伟被法院一审判处有期徒刑22年和20年。"
    labels = [("司法行为-入狱", "触发词"), ("司法行为-入狱", "入狱者"), ("司法行为-入狱", "刑期"), ("其他", "甲")]
    span = {w: (text.index(w) + 1, text.index(w) + len(w)) for w in ("有期徒刑", "程杰", "王绍伟", "22年", "20年")}
    trigger, cheng, wang = (0, *span["有期徒刑"]), (1, *span["程杰"]), (1, *span["王绍伟"])
    years22, years20 = (2, *span["22年"]), (2, *span["20年"])
    edges = [(trigger, cheng), (trigger, years22), (cheng, years22), (trigger, wang), (trigger, years20),
             (wang, years20)]
    argu, head, tail = _logits(len(text) + 2, labels, [trigger, cheng, wang, years22, years20], edges)
    head[cheng[1], wang[1]] = POS                       # a head link alone joins nothing
    steps = extract_events_steps(argu, head, tail, labels)
    names = [text[h - 1:t] for _, _, h, t in steps.arguments]
    assert steps.arguments == sorted((*labels[c], h, t) for c, h, t in (trigger, cheng, wang, years22, years20))
    np.testing.assert_array_equal(steps.scores, POS)
    i, j = names.index("程杰"), names.index("王绍伟")
    assert steps.head_linked[i, j] and not steps.tail_linked[i, j] and not steps.linked[i, j]
    assert list(steps.cliques) == ["司法行为-入狱"]
    assert sorted(sorted(names[k] for k in c) for c in steps.cliques["司法行为-入狱"]) == [
        sorted(["有期徒刑", "王绍伟", "20年"]), sorted(["有期徒刑", "程杰", "22年"])]
    assert steps.events == extract_events(argu, head, tail, labels)
    assert len(steps.events) == 2

    nothing = extract_events_steps(np.full_like(argu, NEG), head, tail, labels)
    assert nothing.arguments == [] and nothing.events == [] and nothing.linked.shape == (0, 0)


def test_steps_give_the_decoders_events_on_random_logits():
    from rofjax.decode.events import extract_events_steps

    rng = np.random.default_rng(3)
    labels = [(f"类型{k}", role) for k in range(2) for role in ("触发词", "甲", "乙")]
    for _ in range(20):
        n = int(rng.integers(4, 12))
        argu = np.where(np.triu(np.ones((n, n), bool)), rng.normal(-1.5, 1.5, size=(len(labels), n, n)), -np.inf)
        head, tail = rng.normal(0.3, 1.0, size=(2, n, n))
        steps = extract_events_steps(argu, head, tail, labels, require_trigger=True)
        assert steps.events == ref.extract_events(argu, head, tail, labels, trigger=True)
        for event_type, cliques in steps.cliques.items():
            for clique in cliques:
                assert all(steps.arguments[k][0] == event_type for k in clique)
                assert all(steps.linked[a, b] for a in clique for b in clique if a != b)
