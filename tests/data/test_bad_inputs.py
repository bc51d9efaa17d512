"""Bad input files for the JSONL classification, CLUE tnews, CLUENER, DuEE and DuIE readers, as one table: every
malformed file fails with one `DataFormatError` whose message starts with the file and line, and harmless
variations (a UTF-8 BOM, overlong text) are read. Empty split files go through the datasets' tfds builders."""

import codecs
import json
import os
import re

import pytest

from rofjax.data import synthetic
from rofjax.data.datasets import get_dataset, jsonl_classification, register
from rofjax.data.readers import clue, ie, jsonl
from rofjax.data.readers.jsonl import DataFormatError
from rofjax.data.tokenizer import Tokenizer
from rofjax.data.vocab import EMBEDDED_VOCAB
from tests.clue_fixtures import write_clue_task

LABELS = ["差评", "好评"]
DUEE_SCHEMA = {"组织关系-裁员": ["时间", "裁员方", "裁员人数"]}
PREDICATES = ["创始人", "董事长"]
LONG_TEXT = "质量很好，非常满意。" * 2000

# One valid line per format; every bad file below is this line followed by one bad line, so errors are on line 2.
GOOD = {
    "jsonl": {"text": "质量很好", "label": "好评"},
    "tnews": {"label": "102", "label_desc": "news_entertainment", "sentence": "江疏影甜甜圈自拍", "keywords": "江疏影"},
    "cluener": {"text": "周荫如来到浙商银行", "label": {"name": {"周荫如": [[0, 2]]}, "company": {"浙商银行": [[5, 8]]}}},
    "duee": {"text": "雀巢裁员4000人。", "id": "0", "event_list": [
        {"event_type": "组织关系-裁员", "trigger": "裁员", "trigger_start_index": 2,
         "arguments": [{"role": "裁员方", "argument": "雀巢", "argument_start_index": 0}]}]},
    "duie": {"text": "马化腾创立了腾讯。", "spo_list": [{"predicate": "创始人", "subject": "腾讯", "object": "马化腾"}]},
}
READERS = {
    "jsonl": lambda path: jsonl.read_classification(path, LABELS),
    "tnews": lambda path: clue.read_split("tnews", [path]),
    "cluener": lambda path: ie.read_cluener(path),
    "duee": lambda path: ie.read_duee(path, DUEE_SCHEMA),
    "duie": lambda path: ie.read_duie(path, PREDICATES),
}


def _with(fmt, **changes):
    return {**GOOD[fmt], **changes}


def _duee_event(**changes):
    return _with("duee", event_list=[{**GOOD["duee"]["event_list"][0], **changes}])


def _duee_argument(**changes):
    event = GOOD["duee"]["event_list"][0]
    return _duee_event(arguments=[{**event["arguments"][0], **changes}])


def _line(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _gbk(fmt) -> bytes:
    """The format's good line with a character of its text in GBK, as a GBK editor saves it (one whose GBK bytes
    are not by chance valid UTF-8, as those of 雀 are)."""

    def valid_utf8(data):
        try:
            return bool(data.decode("utf-8"))
        except UnicodeDecodeError:
            return False

    text = GOOD[fmt].get("text") or GOOD[fmt]["sentence"]
    char = next(c for c in text if not valid_utf8(c.encode("gbk")))
    return _line(GOOD[fmt]).replace(char.encode("utf-8"), char.encode("gbk"), 1)


# (format, second line, expected message after "file:2: "; None: the file is read)
CASES = [
    *[(fmt, b'{"text": "unterminated', r"not valid JSON \(Unterminated string") for fmt in GOOD],
    *[(fmt, _line(GOOD[fmt])[:-1] + b'\xff}', r"not UTF-8 \(byte 0xff at byte \d+ of the line\)") for fmt in GOOD],
    *[(fmt, _gbk(fmt), r"not UTF-8 \(byte 0x[0-9a-f]{2} at byte \d+ of the line\); save the file as UTF-8")
      for fmt in GOOD],
    *[(fmt, b"[1, 2]", r"expected a JSON object, got a list") for fmt in GOOD],
    # unknown labels
    ("jsonl", _with("jsonl", label="中评"), r"label '中评' is not one of \['差评', '好评'\]"),
    ("jsonl", _with("jsonl", label=2), r"label 2 is not one of"),
    ("tnews", _with("tnews", label="105"), r"label '105' is not one of tnews's labels"),
    ("cluener", _with("cluener", label={"person": {"周荫如": [[0, 2]]}}), r"entity type 'person' is not one of"),
    ("duee", _duee_event(event_type="组织关系-罢工"), r"event type '组织关系-罢工' is not in the schema"),
    ("duee", _duee_argument(role="罢工人数"), r"role '罢工人数' is not a role of '组织关系-裁员'"),
    ("duie", _with("duie", spo_list=[{"predicate": "毕业院校", "subject": "腾讯", "object": "马化腾"}]),
     r"predicate '毕业院校' is not in the schema"),
    # spans and offsets that do not match the text
    ("cluener", _with("cluener", label={"name": {"周荫如": [[1, 3]]}}), r"name '周荫如' is not at \[1, 3\]"),
    ("cluener", _with("cluener", label={"name": {"周荫如": [[7, 12]]}}), r"span \[7, 12\] of name '周荫如' is outside"),
    ("duee", _duee_argument(argument_start_index=1), r"'雀巢' is not at offset 1"),
    ("duee", _duee_event(trigger_start_index=40), r"offset 40 of 组织关系-裁员/触发词 '裁员' is outside the text"),
    ("duie", _with("duie", spo_list=[{"predicate": "创始人", "subject": "百度", "object": "马化腾"}]),
     r"subject '百度' does not occur in the text"),
    # fields of the wrong type
    ("jsonl", _with("jsonl", text=5), r"field 'text' must be a string, got an integer \(5\)"),
    ("jsonl", {"label": "好评"}, r"missing text field 'text'"),
    ("jsonl", _with("jsonl", label=["好评"]), r"label \['好评'\] is not one of"),
    ("jsonl", _with("jsonl", label=True), r"label True is not one of"),
    ("tnews", _with("tnews", sentence=["江疏影"]), r"field 'sentence' is missing or not a str"),
    ("tnews", _with("tnews", label=["102"]), r"label \['102'\] is not one of tnews's labels"),
    ("cluener", _with("cluener", text=None), r"text must be a string, got null"),
    ("cluener", _with("cluener", label=[["name", 0, 2]]), r"label \(an object .*\) must be an object, got a list"),
    ("cluener", _with("cluener", label={"name": ["周荫如"]}), r"label\['name'\] .* must be an object, got a list"),
    ("cluener", _with("cluener", label={"name": {"周荫如": [0, 2]}}), r"span 0 of name '周荫如' must be \[start, end\]"),
    ("cluener", _with("cluener", label={"name": {"周荫如": [["0", "2"]]}}),
     r"span \['0', '2'\] of name '周荫如' must be \[start, end\] \(two integers\)"),
    ("cluener", _with("cluener", label={"name": {"周荫如": "0,2"}}),
     r"the spans of name '周荫如' must be a list, got a string"),
    ("duee", _with("duee", text=["雀巢"]), r"text must be a string, got a list"),
    ("duee", _with("duee", event_list={"event_type": "组织关系-裁员"}), r"event_list must be a list, got an object"),
    ("duee", _with("duee", event_list=["组织关系-裁员"]), r"event_list\[0\] must be an object, got a string"),
    ("duee", _duee_event(event_type=["组织关系-裁员"]), r"event type \['组织关系-裁员'\] is not in the schema"),
    ("duee", _duee_event(arguments={"role": "裁员方"}), r"组织关系-裁员 arguments must be a list, got an object"),
    ("duee", _duee_event(arguments=["雀巢"]), r"组织关系-裁员 arguments\[0\] must be an object, got a string"),
    ("duee", _duee_argument(argument_start_index="0"),
     r"the start index of 组织关系-裁员/裁员方 '雀巢' must be an integer, got a string"),
    ("duee", _duee_argument(argument=4000), r"组织关系-裁员/裁员方 has no argument text"),
    ("duie", _with("duie", text=7), r"text must be a string, got an integer \(7\)"),
    ("duie", _with("duie", spo_list={"predicate": "创始人"}), r"spo_list must be a list, got an object"),
    ("duie", _with("duie", spo_list=["创始人"]), r"spo_list\[0\] must be an object, got a string"),
    ("duie", _with("duie", spo_list=[{"predicate": "创始人", "subject": "腾讯", "object": {"@value": "马化腾"}}]),
     r"the object of 创始人 must be a string, got an object"),
    # accepted: a BOM is handled by the first-line decoding, overlong text is the tokenizer's to truncate
    ("jsonl", _with("jsonl", text=LONG_TEXT), None),
    ("tnews", _with("tnews", sentence=LONG_TEXT), None),
    ("cluener", _with("cluener", text="周荫如来到浙商银行" + LONG_TEXT), None),
    ("duee", _with("duee", text="雀巢裁员4000人。" + LONG_TEXT), None),
    ("duie", _with("duie", text="马化腾创立了腾讯。" + LONG_TEXT), None),
]


def _case_id(case):
    fmt, _, expected = case
    return f"{fmt}-{re.sub(r'[^a-z ]', '', expected or 'accepted').strip().replace(' ', '_')[:40]}"


def _write(path, lines, bom=False):
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + b"".join(_line(v) + b"\n" for v in lines))
    return str(path)


@pytest.mark.parametrize("fmt,line,expected", CASES, ids=[_case_id(c) for c in CASES])
def test_reader_names_file_and_line(tmp_path, fmt, line, expected):
    path = _write(tmp_path / f"{fmt}_train.json", [GOOD[fmt], line])
    if expected is None:
        records = list(READERS[fmt](path))
        assert len(records) == 2
        return
    with pytest.raises(DataFormatError, match="^" + re.escape(path) + ":2: .*" + expected):
        list(READERS[fmt](path))


@pytest.mark.parametrize("fmt", sorted(GOOD))
def test_a_utf8_bom_is_accepted(tmp_path, fmt):
    plain = list(READERS[fmt](_write(tmp_path / "plain.json", [GOOD[fmt], GOOD[fmt]])))
    with_bom = list(READERS[fmt](_write(tmp_path / "bom.json", [GOOD[fmt], GOOD[fmt]], bom=True)))
    assert with_bom == plain and len(plain) == 2


@pytest.mark.parametrize("bom", [False, True])
def test_non_utf8_byte_offset_counts_the_files_bytes(tmp_path, bom):
    path = _write(tmp_path / "f.json", [GOOD["jsonl"], b'{"text": "\xb2\xee", "label": 1}'], bom=bom)
    column = len(b'{"text": "') + 1
    with pytest.raises(DataFormatError, match=re.escape(f"{path}:2: not UTF-8 (byte 0xb2 at byte {column} of")):
        list(READERS["jsonl"](path))
    first = _write(tmp_path / "g.json", [b'{"text": "\xb2\xee", "label": 1}'], bom=bom)
    with pytest.raises(DataFormatError, match=re.escape(f"{first}:1: not UTF-8 (byte 0xb2 at byte "
                                                        f"{column + 3 * bom} of")):
        list(READERS["jsonl"](first))


def test_overlong_text_is_truncated_by_the_tokenizer(tmp_path):
    record = next(iter(READERS["jsonl"](_write(tmp_path / "long.json", [_with("jsonl", text=LONG_TEXT)]))))
    ids, segments, offsets = Tokenizer(EMBEDDED_VOCAB).encode(record["text"], maxlen=64)[:3]
    assert len(ids) == len(segments) == len(offsets) == 64


# CLUE's single-JSON files (cmrc2018, c3) ------------------------------------------------------------------------

def _cmrc_dev(tmp_path, data: bytes | None = None, bom=False) -> tuple[str, bytes]:
    """The dev.json of a small CLUE cmrc2018 folder, indented over many lines; `data` replaces its contents."""
    path = os.path.join(write_clue_task(tmp_path, "cmrc2018", n=2), "dev.json")
    if data is None:
        data = json.dumps(json.load(open(path, encoding="utf-8")), ensure_ascii=False, indent=1).encode("utf-8")
    with open(path, "wb") as f:
        f.write((codecs.BOM_UTF8 if bom else b"") + data)
    return path, data


def test_single_json_files_accept_a_bom_and_name_bad_bytes_and_types(tmp_path):
    plain, data = _cmrc_dev(tmp_path / "plain")
    assert list(clue.read_cmrc2018(_cmrc_dev(tmp_path / "bom", data, bom=True)[0])) == list(clue.read_cmrc2018(plain))

    offset = data.index("第".encode())
    line = data[:offset].count(b"\n") + 1
    gbk, _ = _cmrc_dev(tmp_path / "gbk", data[:offset] + "第".encode("gbk") + data[offset + 3:])
    with pytest.raises(DataFormatError,
                       match=re.escape(f"{gbk}:{line}: not UTF-8 (byte 0xb5 at byte offset {offset})")):
        list(clue.read_cmrc2018(gbk))
    bom, _ = _cmrc_dev(tmp_path / "gbk_bom", data[:offset] + "第".encode("gbk") + data[offset + 3:], bom=True)
    with pytest.raises(DataFormatError, match=re.escape(f"{bom}:{line}: not UTF-8 (byte 0xb5 at byte offset "
                                                        f"{offset + 3})")):
        list(clue.read_cmrc2018(bom))

    broken, _ = _cmrc_dev(tmp_path / "broken", data.replace(b'"qas":', b'"qas"', 1))
    line = data[:data.index(b'"qas":')].count(b"\n") + 1
    with pytest.raises(DataFormatError, match="^" + re.escape(f"{broken}:{line}: not valid JSON")):
        list(clue.read_cmrc2018(broken))

    path = os.path.join(write_clue_task(tmp_path / "c3", "c3", n=2), "m-dev.json")
    entries = json.load(open(path, encoding="utf-8"))
    entries[0][1] = ["对话里提到了什么？"]
    open(path, "w", encoding="utf-8").write(json.dumps(entries, ensure_ascii=False))
    with pytest.raises(DataFormatError, match=re.escape(f"{path}: [0][1][0]: the entry must be an object, got a "
                                                        f"string")):
        list(clue.read_c3(path))


def test_vocabulary_with_a_bom_keeps_pad_at_id_0_and_bad_bytes_name_the_line(tmp_path):
    tokens = open(EMBEDDED_VOCAB, encoding="utf-8").read().splitlines()
    path = tmp_path / "vocab.txt"
    path.write_bytes(codecs.BOM_UTF8 + ("\n".join(tokens) + "\n").encode("utf-8"))
    assert Tokenizer(path).pad_id == 0
    path.write_bytes(("\n".join(tokens[:7]) + "\n").encode("utf-8") + "中".encode("gbk") + b"\n")
    with pytest.raises(DataFormatError, match=re.escape(f"{path}:8: not UTF-8")):
        Tokenizer(path)


# Empty files, through the datasets' tfds builders ---------------------------------------------------------------

def _jsonl_folder(folder):
    os.makedirs(folder)
    for name in ("train.jsonl", "dev.jsonl"):
        _write(folder / name, [GOOD["jsonl"], _with("jsonl", label="差评")])
    return str(folder)


def _duee_folder(folder):
    return synthetic.write_generated_duee(str(folder), train=4, dev=2, seed=0)


def _duie_folder(folder):
    return synthetic.write_generated_duie(str(folder), train=4, dev=2, seed=0)


EMPTY = [  # (dataset, folder writer, file to empty, its split, contents)
    ("bad_inputs_reviews", _jsonl_folder, "train.jsonl", "train", b""),
    ("bad_inputs_reviews", _jsonl_folder, "dev.jsonl", "validation", b"\n\n"),
    ("tnews", lambda folder: write_clue_task(folder, "tnews", n=3), "train.json", "train", b""),
    ("tnews", lambda folder: write_clue_task(folder, "tnews", n=3), "dev.json", "validation", codecs.BOM_UTF8),
    ("cluener", lambda folder: write_clue_task(folder, "cluener", n=3), "train.json", "train", b""),
    ("duee", _duee_folder, "duee_train.json", "train", b""),
    ("duie", _duie_folder, "duie_dev.json", "validation", b"\n"),
]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    register(jsonl_classification("bad_inputs_reviews", labels=LABELS), replace=True)
    return tmp_path


@pytest.mark.parametrize("name,make,file,split,contents", EMPTY, ids=[f"{c[0]}-{c[2]}" for c in EMPTY])
def test_an_empty_split_file_names_the_split_and_the_file(home, name, make, file, split, contents):
    folder = make(home / "data")
    with open(os.path.join(folder, file), "wb") as f:
        f.write(contents)
    with pytest.raises(DataFormatError, match=re.escape(os.path.join(folder, file))
                       + f": the {split} split has no records"):
        get_dataset(name).split("train", folder)
    assert os.path.isdir(home / "home" / ".cache" / "rofjax")


def test_an_absent_test_file_is_no_error(home):
    folder = _jsonl_folder(home / "data")
    assert [r["label"] for r in get_dataset("bad_inputs_reviews").split("train", folder)] == [1, 0]
    with pytest.raises(FileNotFoundError, match="has no test split"):
        get_dataset("bad_inputs_reviews").split("test", folder)
