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
