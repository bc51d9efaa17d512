import json
import re

import numpy as np
import pytest

from rofjax import display


def _text_of(markup):
    """The characters a browser shows, labels included (`<sub>` → `[label]`)."""
    markup = re.sub(r"<sub[^>]*>(.*?)</sub>", r"[\1]", markup)
    return re.sub(r"<[^>]+>", "", markup).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def test_highlight_marks_nested_spans_and_labels_each_at_its_end():
    text = "新华社上海一月五日电"
    markup = display.highlight(text, [(0, 5, "ORG"), (3, 5, "LOC"), (0, 3, "ORG")])
    assert _text_of(markup) == "新华社[ORG]上海[LOC][ORG]一月五日电"
    # Each stretch takes the colour of the shortest span over it: 上海 the LOC colour, 新华社 the ORG one.
    marked = re.findall(r'background:(#[0-9a-f]+);[^>]*title="(\w+)">([^<]+)<', markup)
    assert [(label, chunk) for _, label, chunk in marked] == [("ORG", "新华社"), ("LOC", "上海")]
    assert marked[0][0] != marked[1][0]


def test_highlight_escapes_the_text_and_labels():
    markup = display.highlight("a<b>&c", [(1, 4, "<x>")])
    assert "<b>" not in markup and "&lt;b&gt;" in markup and "&lt;x&gt;" in markup
    assert _text_of(markup) == "a<b>[<x>]&c"


@pytest.mark.parametrize("span", [(2, 2, "X"), (-1, 2, "X"), (3, 9, "X")])
def test_highlight_refuses_spans_outside_the_text(span):
    with pytest.raises(ValueError, match="outside the text"):
        display.highlight("abcdef", [span])


def test_read_rows_leaves_a_line_still_being_written(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert display.read_rows(str(path)) == []
    path.write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n" + '{"step": 2, "lo', encoding="utf-8")
    assert display.read_rows(str(path)) == [{"step": 1, "loss": 2.0}]


def test_token_labels_fall_back_to_positions_without_a_cjk_font(monkeypatch):
    monkeypatch.setattr(display, "cjk_font", lambda: None)
    assert display.token_labels(["[CLS]", "a"]) == ["[CLS]", "a"]
    assert display.token_labels(["[CLS]", "国", "[SEP]"]) == ["0", "1", "2"]
    assert display.token_legend(["[CLS]", "国"]) == "0:[CLS]  1:国"
    monkeypatch.setattr(display, "cjk_font", lambda: "Noto Sans CJK SC")
    assert display.token_labels(["国"]) == ["国"]


def test_heatmap_checks_the_shape_against_the_tokens():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    image = display.heatmap(ax, np.eye(3), ["a", "b", "c"], title="t")
    assert image.get_array().shape == (3, 3)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"\(3, 3\) for 2 × 3 tokens"):
        display.heatmap(ax, np.eye(3), ["a", "b"], ["a", "b", "c"])
    plt.close(fig)
