"""Your own data, chosen from a config: span NER in JSON lines (offsets, doccano, CLUENER), classification in
JSON lines, plain text for pre-training; each reader's bad input named by file and line."""

import json
import pathlib
import re

import pytest

from rofjax.data.datasets import get_dataset
from rofjax.data.readers.jsonl import DataFormatError, entity_types, read_ner

TEXT = "李鹏在北京会见了美国客人"
GOLD = [("LOC", 3, 5), ("LOC", 8, 10), ("PER", 0, 2)]


def _write(path, lines):
    path.write_text("".join((json.dumps(x, ensure_ascii=False) if not isinstance(x, str) else x) + "\n"
                            for x in lines), encoding="utf-8")
    return path


def test_the_three_ner_formats_read_the_same_entities(tmp_path):
    offsets = {"text": TEXT, "entities": [{"type": "PER", "start": 0, "end": 2}, ["LOC", 3, 5],
                                          {"label": "LOC", "start_offset": 8, "end_offset": 10}]}
    doccano = {"text": TEXT, "label": [[0, 2, "PER"], [3, 5, "LOC"], [8, 10, "LOC"]]}
    cluener = {"text": TEXT, "label": {"PER": {"李鹏": [[0, 1]]}, "LOC": {"北京": [[3, 4]], "美国": [[8, 9]]}}}
    records = list(read_ner(_write(tmp_path / "a.jsonl", [offsets, doccano, cluener, {"text": "无标注"}])))
    assert [r["entities"] for r in records] == [sorted(GOLD)] * 3 + [None]
    assert entity_types(tmp_path / "a.jsonl") == ["LOC", "PER"]


@pytest.mark.parametrize("line, message", [
    ("{not json", "not valid JSON"),
    ({"entities": []}, "missing text"),
    ({"text": TEXT, "entities": {"PER": 1}}, "entities must be a list"),
    ({"text": TEXT, "entities": [{"type": "PER", "begin": 0, "end": 2}]}, "entities\\[0\\] needs type"),
    ({"text": TEXT, "entities": [["PER", 0]]}, "entities\\[0\\] must be an object"),
    ({"text": TEXT, "entities": [["PER", 5, 40]]}, "is not a non-empty span of the text \\(length 12"),
    ({"text": TEXT, "entities": [["PER", 2, 2]]}, "is not a non-empty span"),
    ({"text": TEXT, "entities": [["PER", "0", 2]]}, "the start of entities\\[0\\] must be an integer"),
    ({"text": TEXT, "label": [[0, 2]]}, "label\\[0\\] must be \\[start, end, type\\]"),
    ({"text": TEXT, "label": {"PER": {"李鹏": [[1, 2]]}}}, "PER '李鹏' is not at \\[1, 2\\]"),
    ({"text": TEXT, "entities": [["ORG", 0, 2]]}, "entity type 'ORG' is not one of \\['PER', 'LOC'\\]"),
    ({"text": TEXT}, "no entities"),
])
def test_bad_ner_lines_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path / "train.jsonl", [{"text": "好", "entities": []}, line])
    with pytest.raises(DataFormatError, match=f"^{path}:2: .*{message}"):
        list(read_ner(path, ["PER", "LOC"], labelled=True))


def test_jsonl_ner_is_chosen_from_a_config_alone(tmp_path):
    from configs.ie import peoples_daily_ner
    from rofjax.training.tasks import build_task

    data = tmp_path / "data"
    data.mkdir()
    lines = [{"text": TEXT, "entities": [list(g) for g in GOLD]},
             {"text": "美国客人在北京", "label": [[0, 2, "LOC"], [5, 7, "LOC"]]},
             {"text": "张三去了上海", "label": {"PER": {"张三": [[0, 1]]}, "LOC": {"上海": [[4, 5]]}}}]
    _write(data / "train.jsonl", lines)
    _write(data / "dev.jsonl", lines[:2])
    spec = get_dataset("jsonl_ner")
    assert spec.labels(str(data)) == ["LOC", "PER"]
    assert [r["entities"] for r in spec.split("train", str(data))] == [r["entities"] for r in
                                                                      read_ner(data / "train.jsonl")]
    assert len(spec.split("validation", str(data))) == 2
    config = peoples_daily_ner.get_config()
    config.data.dataset, config.data.data_dir = "jsonl_ner", str(data)
    task = build_task(config)
    assert task.types == ["LOC", "PER"]
    example = task.encode(spec.split("train", str(data))[0])
    assert int((example["span_labels"].sum(-1) > 0).sum()) == 3       # all three entities on token boundaries

    # A dev entity of a type the training file never uses is named, not silently scored as a miss.
    other = tmp_path / "other"
    other.mkdir()
    _write(other / "train.jsonl", lines)
    _write(other / "dev.jsonl", [lines[0], {"text": "李鹏在北京", "entities": [["ALIEN", 0, 2]]}])
    with pytest.raises(DataFormatError, match=r"dev.jsonl:2: .*ALIEN"):
        spec.split("validation", str(other))


def test_ner_types_from_the_command_line_must_cover_the_data_and_an_empty_file_is_named(tmp_path):
    import subprocess
    import sys

    from configs.ie import peoples_daily_ner
    from rofjax.training.tasks import build_task

    data = tmp_path / "data"
    data.mkdir()
    _write(data / "train.jsonl", [{"text": TEXT, "entities": [list(g) for g in GOLD]}])
    _write(data / "dev.jsonl", [{"text": TEXT, "entities": [list(g) for g in GOLD]}])
    config = peoples_daily_ner.get_config()
    config.data.dataset, config.data.data_dir = "jsonl_ner", str(data)
    config.data.entity_types = ("PER", "LOC", "ORG")              # the order given is the heads' order
    assert build_task(config).types == ["PER", "LOC", "ORG"]
    config.data.entity_types = ("PER",)
    with pytest.raises(ValueError, match=r"entity_types=\('PER',\) lacks 'LOC', which dataset 'jsonl_ner' uses"):
        build_task(config)
    # The key is a tuple, so a command line can set it (ml_collections cannot override a list).
    parsed = subprocess.run([sys.executable, "-c", "from absl import app, flags\n"
                             "from ml_collections import config_flags\n"
                             "config_flags.DEFINE_config_file('config')\n"
                             "app.run(lambda _: print(flags.FLAGS.config.data.entity_types))",
                             "--config=configs/ie/peoples_daily_ner.py", "--config.data.entity_types=('PER','LOC')"],
                            capture_output=True, text=True, cwd=pathlib.Path(__file__).parents[2])
    assert parsed.stdout.strip() == "('PER', 'LOC')", parsed.stderr[-500:]

    # An empty training file: with no types given, the task says where it looked; with types given, reading the
    # split names the file.
    (data / "train.jsonl").write_text("\n", encoding="utf-8")
    config.data.entity_types = ()
    with pytest.raises(ValueError, match=rf"entity_types is empty and dataset 'jsonl_ner' has no entity in its "
                                         rf"training data \({re.escape(str(data))}\)"):
        build_task(config)
    config.data.entity_types = ("PER", "LOC")
    assert build_task(config).types == ["PER", "LOC"]
    with pytest.raises(DataFormatError, match=r"train.jsonl: the train split has no records"):
        get_dataset("jsonl_ner").split("train", str(data))


def test_jsonl_classification_and_text_corpus_need_only_a_folder(tmp_path):
    _write(tmp_path / "train.jsonl", [{"text": "好", "label": "好评"}, {"text": "差", "label": "差评"},
                                      {"text": "还行", "pair": "一般", "label": "好评"}])
    _write(tmp_path / "dev.jsonl", [{"text": "不错", "label": "好评"}])
    spec = get_dataset("jsonl_classification")
    assert spec.labels(str(tmp_path)) == ["好评", "差评"]
    train = list(spec.split("train", str(tmp_path)))
    assert [(r["text"], r["pair"], r["label"]) for r in train] == [("好", "", 0), ("差", "", 1), ("还行", "一般", 0)]
    # The label set is train.jsonl's names: an integer in dev.jsonl is refused, not read as an index into it.
    read_dev = spec.read_file(str(tmp_path / "dev.jsonl"), str(tmp_path))
    assert [r["label"] for r in read_dev] == [0]
    _write(tmp_path / "dev.jsonl", [{"text": "不错", "label": 1}])
    with pytest.raises(DataFormatError, match=r"dev.jsonl:1: label 1 is not one of \['好评', '差评'\]"):
        list(spec.read_file(str(tmp_path / "dev.jsonl"), str(tmp_path)))
    _write(tmp_path / "train.jsonl", [{"text": "好", "label": 1}])
    with pytest.raises(DataFormatError, match="train.jsonl:1: jsonl_classification takes label names"):
        spec.labels(str(tmp_path))
    _write(tmp_path / "train.jsonl", [{"text": "好", "label": "好评"}, {"text": "差"}])
    with pytest.raises(DataFormatError, match="train.jsonl:2: no 'label' field"):
        spec.labels(str(tmp_path))

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.txt").write_text("第一篇文章。\n\n第二篇文章。\n", encoding="utf-8")
    (corpus / "dev.txt").write_text("验证用的一篇。\n", encoding="utf-8")
    spec = get_dataset("text_corpus")
    assert [r["text"] for r in spec.split("train", str(corpus))] == ["第一篇文章。", "第二篇文章。"]
    assert spec.task_for("mlm")[0] == "mlm"
    (corpus / "dev.txt").write_bytes(b"\xff\xfe bad\n")
    with pytest.raises(DataFormatError, match="dev.txt:1: not UTF-8"):
        list(spec.split("validation", str(corpus)))
