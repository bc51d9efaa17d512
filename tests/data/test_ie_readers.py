import json

import pytest

from rofjax.data.readers.ie import duee_labels, read_duee, read_duee_schema, read_duie, read_duie_schema
from rofjax.data.readers.jsonl import DataFormatError
from rofjax.data.synthetic import generate_duee, write_generated_duee, write_generated_duie


def test_generated_duee_reads_back_with_shared_triggers_arguments_and_nesting(tmp_path):
    folder = write_generated_duee(tmp_path, train=200, dev=20, seed=3)
    schema = read_duee_schema(tmp_path / "duee_event_schema.json")
    assert len(duee_labels(schema)) == sum(len(r) + 1 for r in schema.values())
    records = list(read_duee(tmp_path / "duee_train.json", schema))
    assert len(records) == 200 and folder == str(tmp_path)
    shared_trigger = shared_argument = nested = multi_type = False
    for record in records:
        events = record["events"]
        triggers = [next(a for a in e if a[1] == "触发词") for e in events]
        shared_trigger |= len(triggers) != len(set(triggers))
        args = [a for e in events for a in e if a[1] != "触发词"]
        shared_argument |= len(args) != len(set(args))
        spans = [(a[3], a[3] + len(a[2])) for a in args]
        nested |= any(s1 < s2 and e2 < e1 or s1 == s2 and e2 < e1 for s1, e1 in spans for s2, e2 in spans)
        multi_type |= len({e[0][0] for e in events}) > 1
    assert shared_trigger and shared_argument and nested and multi_type
    assert generate_duee(5, seed=1) == generate_duee(5, seed=1) != generate_duee(5, seed=2)


def _line(tmp_path, record):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"text": "雀巢裁员4000人。", "id": "0", "event_list": []}, ensure_ascii=False) + "\n"
                    + json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("event,message", [
    ({"event_type": "组织关系-裁员", "trigger": "裁员", "trigger_start_index": 40, "arguments": []},
     "offset 40 of 组织关系-裁员/触发词 '裁员' is outside the text"),
    ({"event_type": "组织关系-裁员", "trigger": "裁员", "trigger_start_index": 2,
      "arguments": [{"role": "裁员方", "argument": "雀巢", "argument_start_index": 1}]},
     "'雀巢' is not at offset 1"),
    ({"event_type": "组织关系-罢工", "trigger": "裁员", "trigger_start_index": 2, "arguments": []},
     "event type '组织关系-罢工' is not in the schema"),
    ({"event_type": "组织关系-裁员", "trigger": "裁员", "trigger_start_index": 2,
      "arguments": [{"role": "罢工人数", "argument": "4000人", "argument_start_index": 4}]},
     "role '罢工人数' is not a role"),
])
def test_malformed_duee_lines_name_file_and_line(tmp_path, event, message):
    schema = {"组织关系-裁员": ["时间", "裁员方", "裁员人数"]}
    path = _line(tmp_path, {"text": "雀巢裁员4000人。", "id": "1", "event_list": [event]})
    with pytest.raises(DataFormatError, match=f"bad.json:2: .*{message}"):
        list(read_duee(path, schema))


def test_duie_generator_and_reader(tmp_path):
    write_generated_duie(tmp_path, train=50, dev=5, seed=0)
    predicates = read_duie_schema(tmp_path / "duie_schema.json")
    records = list(read_duie(tmp_path / "duie_train.json", predicates))
    assert len(records) == 50 and all(r["triples"] for r in records)
    bad = tmp_path / "bad_duie.json"
    bad.write_text(json.dumps({"text": "李明是华为的创始人", "spo_list": [
        {"subject": "腾讯", "predicate": "创始人", "object": "李明"}]}, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="bad_duie.json:1: subject '腾讯' does not occur"):
        list(read_duie(bad, predicates))


def test_cluener_reader_and_official_metric(tmp_path):
    from rofjax.data.readers.ie import CLUENER_TYPES, read_cluener
    from rofjax.decode.metrics import cluener_official_f1

    path = tmp_path / "dev.json"
    lines = [{"text": "北京勘察设计协会副会长兼秘书长周荫如", "label": {
        "organization": {"北京勘察设计协会": [[0, 7]]}, "name": {"周荫如": [[15, 17]]},
        "position": {"副会长": [[8, 10]], "秘书长": [[12, 14]]}}}, {"text": "无标签的测试行", "id": 7}]
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    first, second = list(read_cluener(path))
    assert ("name", 15, 18) in first["entities"] and len(first["entities"]) == 4
    assert second["entities"] is None and second["id"] == 7
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"text": "周荫如", "label": {"name": {"周荫如": [[0, 3]]}}}, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad.json:1: span \[0, 3\] of name '周荫如' is outside"):
        list(read_cluener(bad))
    gold = [{"name": {"周荫如"}, "position": {"副会长", "秘书长"}}]
    predicted = [{"name": {"周荫如"}, "position": {"副会长"}, "company": {"北京"}}]
    scores = cluener_official_f1(predicted, gold, CLUENER_TYPES)
    assert scores["f1/name"] == 1.0 and scores["f1/position"] == pytest.approx(2 / 3)
    assert scores["f1/company"] == 0.0 and scores["macro_f1"] == pytest.approx((1 + 2 / 3) / 10)


def test_duee_fin_enumerated_roles_label_the_trigger(tmp_path):
    from rofjax.data.readers.ie import read_duee_fin, read_duee_fin_schema

    (tmp_path / "schema.json").write_text(json.dumps({"event_type": "公司上市", "role_list": [
        {"role": "上市公司"}, {"role": "环节", "enum_items": ["筹备上市", "正式上市"]}]}, ensure_ascii=False) + "\n",
        encoding="utf-8")
    schema, enum_roles = read_duee_fin_schema(tmp_path / "schema.json")
    assert schema == {"公司上市": ["上市公司", "筹备上市", "正式上市"]}
    assert enum_roles[("公司上市", "正式上市")] == ("公司上市", "环节")
    line = {"id": "d1", "title": "甲公司  公告", "text": "甲公司今日在科创板上市。",
            "event_list": [{"event_type": "公司上市", "trigger": "上市",
                            "arguments": [{"role": "上市公司", "argument": "甲公司"},
                                          {"role": "环节", "argument": "正式上市"}]}]}
    (tmp_path / "train.json").write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    (record,) = list(read_duee_fin(tmp_path / "train.json", schema, enum_roles))
    assert record["text"] == "甲公司 公告 甲公司今日在科创板上市。"
    start = record["text"].index("上市")
    assert record["events"] == [sorted([("公司上市", "触发词", "上市", start), ("公司上市", "上市公司", "甲公司", 0),
                                        ("公司上市", "正式上市", "上市", start)])]
    line["event_list"][0]["arguments"][0]["argument"] = "乙公司"
    (tmp_path / "bad.json").write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="bad.json:1: 公司上市/上市公司 '乙公司' does not occur"):
        list(read_duee_fin(tmp_path / "bad.json", schema, enum_roles))
