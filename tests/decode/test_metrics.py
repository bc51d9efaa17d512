import pytest

from rofjax.decode.metrics import char_f1, duee_official_f1, gplinker_event_scores

GOLD = {"1": [{"event_type": "组织关系-裁员", "trigger": "裁员",
               "arguments": [{"role": "裁员方", "argument": "雀巢", "alias": ["雀巢公司"]},
                             {"role": "裁员人数", "argument": "4000人", "alias": []}]}]}


def test_char_f1_by_hand():
    assert char_f1("雀巢", "雀巢") == 1.0
    assert char_f1("4000", "4000人") == pytest.approx(2 * 1.0 * 0.8 / 1.8)      # P 4/4, R 4/5
    assert char_f1("ABC", "abd") == pytest.approx(2 / 3)                       # case-insensitive, 2 common
    assert char_f1("", "x") == 0.0 and char_f1("甲", "乙") == 0.0


def test_duee_official_metric_by_hand():
    predictions = {"1": [{"event_type": "组织关系-裁员",
                          "arguments": [{"role": "裁员方", "argument": "雀巢公司"},      # an alias: 1.0
                                        {"role": "裁员人数", "argument": "4000"},         # 8/9
                                        {"role": "时间", "argument": "昨天"}]}]}          # no gold: 0
    scores = duee_official_f1(predictions, GOLD)
    total = 1.0 + 2 * 0.8 / 1.8
    assert scores["precision"] == pytest.approx(total / 3)
    assert scores["recall"] == pytest.approx(total / 2)
    wrong_type = {"1": [{"event_type": "组织关系-解雇", "arguments": [{"role": "裁员方", "argument": "雀巢"}]}]}
    assert duee_official_f1(wrong_type, GOLD)["f1"] == 0.0
    assert duee_official_f1({}, GOLD) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_gplinker_event_and_argument_levels():
    gold = [[[("入狱", "触发词", "有期徒刑", 17), ("入狱", "入狱者", "程杰", 4), ("入狱", "刑期", "22年", 21)],
             [("入狱", "触发词", "有期徒刑", 17), ("入狱", "入狱者", "王绍伟", 7), ("入狱", "刑期", "20年", 24)]]]
    predicted = [[gold[0][0], [("入狱", "入狱者", "王绍伟", 7), ("入狱", "刑期", "20年", 24)]]]   # 2nd lacks a trigger
    scores = gplinker_event_scores(predicted, gold)
    assert scores["event"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3)}
    assert scores["argument"]["f1"] == 1.0


def test_cmrc2018_normalisation_by_hand():
    from rofjax.decode.metrics import cmrc_em, cmrc_f1, cmrc_segments

    assert cmrc_segments("在1990年，iPhone 3.5版《发布》") == ["在", "1990", "年", "，", "iphone", "3.5", "版", "《", "发",
                                                          "布", "》"]
    assert cmrc_segments("《红楼梦》，", remove_punctuation=True) == ["红", "楼", "梦"]
    # EM ignores case, surrounding whitespace and the listed punctuation, not inner spaces.
    assert cmrc_em(["《红楼梦》"], "红楼梦") == 1.0
    assert cmrc_em([" iPhone-X "], "iphonex") == 1.0
    assert cmrc_em(["iPhone X"], "iphoneX") == 0.0
    # F1 uses the longest common *contiguous* run of segments: 北京大学 vs 北大学 share 大学 (2), not 北大学 (3).
    assert cmrc_f1(["北京大学"], "北大学") == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))
    assert cmrc_f1(["北京大学"], "北京") == pytest.approx(2 / 3)
    assert cmrc_f1(["iPhone 11"], "iphone 11 pro") == pytest.approx(0.8)
    # The best of several gold answers counts; punctuation alone scores 0.
    assert cmrc_f1(["上海", "北京大学"], "北京大学，") == 1.0
    assert cmrc_f1(["北京"], "，。") == 0.0


def test_cmrc2018_scores_count_missing_questions_as_wrong():
    from rofjax.decode.metrics import cmrc2018_scores

    gold = {"q1": ["北京大学"], "q2": ["1990年"], "q3": ["红楼梦"]}
    scores = cmrc2018_scores({"q1": "北京", "q2": "1990年。"}, gold)
    assert scores["em"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (2 / 3 + 1) / 3)
    assert scores["missing"] == 1 and scores["questions"] == 3


def test_cluener_micro_and_official_macro_on_nested_and_overlapping_spans():
    from rofjax.decode.metrics import cluener_official_f1
    from rofjax.decode.spans import span_prf

    text = "北京大学医学部副主任王小明"
    gold = {("organization", 0, 4), ("organization", 0, 7), ("position", 7, 10), ("name", 10, 13)}
    # Right: 北京大学 (nested in the gold 北京大学医学部) and 王小明; wrong: 大学医学部 (overlaps) and 主任.
    predicted = {("organization", 0, 4), ("organization", 2, 7), ("position", 8, 10), ("name", 10, 13)}
    micro = span_prf([predicted], [gold])
    assert micro["f1"] == pytest.approx(2 * 2 / 8)

    def strings(spans):
        out = {}
        for kind, start, end in spans:
            out.setdefault(kind, set()).add(text[start:end])
        return out

    types = ["name", "organization", "position"]
    official = cluener_official_f1([strings(predicted)], [strings(gold)], types)
    # name: P=R=1; organization: 1 of 2 predicted right, 1 of 2 gold found → 0.5; position: 0.
    assert official["macro_f1"] == pytest.approx((1 + 0.5 + 0) / 3)
