import subprocess
import sys

import numpy as np
import pytest

from rofjax.decode import extract_spans, extract_triples, span_prf, spans_to_chars, windows
from rofjax.decode.events import DecodeReport
from rofjax.decode.spans import merge_window_spans


def test_nested_spans_with_cls_and_sep_ignored():
    logits = np.full((2, 8, 8), -3.0)
    logits[0, 1, 3] = logits[0, 2, 2] = logits[1, 1, 5] = 2.0      # nested PER inside LOC, both kept
    logits[0, 0, 2] = logits[1, 4, 7] = 9.0                         # touch [CLS] / [SEP]: ignored
    logits[1, 4, 2] = 9.0                                           # h > t: ignored
    assert extract_spans(logits, labels=["PER", "LOC"]) == [("LOC", 1, 5), ("PER", 1, 3), ("PER", 2, 2)]
    assert extract_spans(logits, length=6) == [(0, 1, 3), (0, 2, 2)]   # row 5 is [SEP] of a shorter sequence
    report = DecodeReport()
    assert len(extract_spans(np.ones((1, 30, 30)), max_spans=10, report=report)) == 10 and report.capped


def test_character_mapping_windows_and_f1():
    offsets = [(0, 0), (0, 1), (1, 2), (2, 4), (0, 0)]
    assert spans_to_chars([("PER", 1, 3)], offsets) == [("PER", 0, 4)]
    assert windows(10, 4, 3) == [(0, 4), (3, 7), (6, 10)]
    assert windows(3, 4, 2) == [(0, 3)]
    with pytest.raises(ValueError, match="stride"):
        windows(10, 4, 5)
    assert merge_window_spans([[("PER", 0, 2)], [("PER", 0, 2), ("LOC", 5, 9)]]) == [("LOC", 5, 9), ("PER", 0, 2)]
    scores = span_prf([{("PER", 0, 2), ("LOC", 3, 4)}, set()], [{("PER", 0, 2)}, {("ORG", 1, 2)}])
    assert scores == {"precision": 0.5, "recall": 0.5, "f1": 0.5}


def test_triples_need_both_head_and_tail_links():
    n, predicates = 10, ["作者", "出版社"]
    entity = np.full((2, n, n), -1.0)
    head = np.full((2, n, n), -1.0)
    tail = np.full((2, n, n), -1.0)
    entity[0, 1, 2] = entity[1, 4, 6] = entity[1, 7, 8] = 1.0      # subject (1,2); objects (4,6), (7,8)
    head[0, 1, 4] = tail[0, 2, 6] = 1.0                             # 作者: both ends linked
    head[1, 1, 7] = 1.0                                             # 出版社: head only → no triple
    assert extract_triples(entity, head, tail, predicates) == [((1, 2), "作者", (4, 6))]
    tail[1, 2, 8] = 1.0
    assert extract_triples(entity, head, tail, predicates) == [((1, 2), "作者", (4, 6)), ((1, 2), "出版社", (7, 8))]
    with pytest.raises(ValueError, match=r"\[2, n, n\]"):
        extract_triples(entity, head[:1], tail, predicates)


def test_decoders_do_not_import_jax():
    code = "import sys, rofjax.decode; print(any(m == 'jax' or m.startswith('jax.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
