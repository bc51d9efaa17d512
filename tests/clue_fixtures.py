"""A few lines of every CLUE task in its published file format (field names, nesting, label strings, file names),
written into a folder the way a user unpacks the CLUE downloads."""

from __future__ import annotations

import os

from rofjax.data.submissions import write_json, write_json_lines

SENTENCES = ["江疏影甜甜圈自拍，迷之角度竟这么好看，美吸引一切事物", "以色列大规模空袭开始，伊朗说会还击",
             "蚂蚁借呗等额还款可以换成先息后本吗", "2019年iPhone 11的价格是5499元", "花呗支持高铁票支付吗",
             "为什么我的借呗额度突然降低了", "这款游戏的画面做得非常精致", "北京大学的研究团队发表了新的成果"]
TNEWS = [("102", "news_entertainment"), ("113", "news_world"), ("104", "news_finance"), ("116", "news_game")]
NLI = ["entailment", "neutral", "contradiction"]


def _sentence(i):
    return SENTENCES[i % len(SENTENCES)]


def _classification_rows(task, n, labelled=True):
    rows = []
    for i in range(n):
        s1, s2 = _sentence(i), _sentence(i + 3)
        if task == "iflytek":
            row = {"label": str(i % 3 * 50), "label_des": "工具", "sentence": s1}
        elif task == "tnews":
            label, desc = TNEWS[i % len(TNEWS)]
            row = {"label": label, "label_desc": desc, "sentence": s1, "keywords": "江疏影,美少女,经纪人"}
        elif task == "afqmc":
            row = {"sentence1": s1, "sentence2": s2, "label": str(i % 2)}
        elif task == "cmnli":
            row = {"sentence1": s1, "sentence2": s2, "label": NLI[i % 3]}
        elif task == "ocnli":
            row = {"level": "medium", "sentence1": s1, "sentence2": s2, "label": NLI[i % 3],
                   "label0": NLI[i % 3], "label1": NLI[i % 3], "label2": NLI[(i + 1) % 3], "label3": NLI[i % 3],
                   "label4": NLI[i % 3], "genre": "news", "prem_id": f"news_{i}", "id": i}
        elif task == "csl":
            row = {"id": i, "abst": s1 + s2, "keyword": ["借呗", "额度", f"关键词{i}"], "label": str(i % 2)}
        else:                                          # wsc
            text = "小明把书放在桌子上，" + s1 + "，然后他就走了。"
            row = {"target": {"span2_index": text.index("他"), "span1_index": 0, "span1_text": "小明",
                              "span2_text": "他"}, "idx": i, "label": ["true", "false"][i % 2], "text": text}
        if not labelled:
            row = {k: v for k, v in row.items() if not k.startswith("label")}
            row["id"] = i
        rows.append(row)
    if task in ("cmnli", "ocnli") and labelled:
        rows.append({**rows[0], "label": "-"})          # annotators disagreed: skipped by the reader
    return rows


def _cmrc(n, labelled=True):
    paragraphs = []
    for i in range(n):
        context = f"第{i}段：" + _sentence(i) + "。" + _sentence(i + 1) + "。这是一段关于中文阅读理解的说明文字。"
        answer = _sentence(i + 1)[:4]
        qa = {"question": f"第{i}段第二句的开头是什么？", "id": f"TRAIN_{i}_QUERY_0"}
        if labelled:
            qa["answers"] = [{"text": answer, "answer_start": context.index(answer)}] * 2
        paragraphs.append({"id": f"TRAIN_{i}", "context": context, "qas": [qa]})
    return {"version": "v1.0", "data": [{"paragraphs": paragraphs, "id": "TRAIN_0", "title": "测试"}]}


def _c3(n, labelled=True, start=0):
    data = []
    for i in range(n):
        choices = ["借呗", "花呗", "高铁票", "游戏"][: 2 + i % 3]
        question = {"question": "对话里提到了什么？", "choice": choices, "id": f"{start + i}"}
        if labelled:
            question["answer"] = choices[i % len(choices)]
        data.append([["男：" + _sentence(i), "女：" + _sentence(i + 2)], [question], f"m{start + i}-1"])
    return data


IDIOMS = ["一帆风顺", "二龙戏珠", "三阳开泰", "四季平安", "五福临门", "六六大顺", "七星高照", "八方来财", "九九同心",
          "十全十美"]


def _chid(n, start, labelled=True):
    lines, answers = [], {}
    tag = start
    for i in range(n):
        blanks = []
        content = []
        for part in range(1 + i % 2):
            a, b = f"#idiom{tag:06d}#", f"#idiom{tag + 1:06d}#"
            blanks += [a, b]
            content.append(f"{_sentence(i)}，{a}，他说道：{b}，{_sentence(i + part + 1)}")
            tag += 2
        lines.append({"candidates": IDIOMS, "content": content})
        for k, blank in enumerate(blanks):
            answers[blank] = (i + k) % len(IDIOMS)
    return lines, answers


def _cluener(n, labelled=True):
    rows = []
    for i in range(n):
        text = f"北京勘察设计协会副会长兼秘书长周荫如{i}年来到浙商银行"
        row = {"text": text, "id": i} if not labelled else {"text": text, "label": {
            "organization": {"北京勘察设计协会": [[0, 7]]}, "name": {"周荫如": [[15, 17]]},
            "position": {"副会长": [[8, 10]], "秘书长": [[12, 14]]},
            "company": {"浙商银行": [[text.index("浙商银行"), text.index("浙商银行") + 3]]}}}
        rows.append(row)
    return rows


def write_clue_task(folder, task: str, n: int = 8) -> str:
    """Write train/dev/test files of `task` (CLUE file names and formats) with `n` lines each; returns the folder."""
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    if task in ("iflytek", "tnews", "afqmc", "cmnli", "ocnli", "wsc", "csl"):
        write_json_lines(os.path.join(folder, "train.50k.json" if task == "ocnli" else "train.json"),
               _classification_rows(task, n))
        write_json_lines(os.path.join(folder, "dev.json"), _classification_rows(task, n))
        write_json_lines(os.path.join(folder, "test.json"), _classification_rows(task, n, labelled=False))
    elif task == "cmrc2018":
        write_json(os.path.join(folder, "train.json"), _cmrc(n))
        write_json(os.path.join(folder, "dev.json"), _cmrc(n))
        write_json(os.path.join(folder, "test.json"), _cmrc(n, labelled=False))
    elif task == "c3":
        for split in ("train", "dev"):
            write_json(os.path.join(folder, f"m-{split}.json"), _c3(n // 2))
            write_json(os.path.join(folder, f"d-{split}.json"), _c3(n - n // 2, start=100))
        write_json(os.path.join(folder, "test1.1.json"), _c3(n, labelled=False))
    elif task == "chid":
        for split, start in (("train", 0), ("dev", 1000), ("test1.1", 2000)):
            lines, answers = _chid(n, start)
            write_json_lines(os.path.join(folder, f"{split}.json"), lines)
            if split != "test1.1":
                write_json(os.path.join(folder, f"{split}_answer.json"), answers)
    elif task == "cluener":
        write_json_lines(os.path.join(folder, "train.json"), _cluener(n))
        write_json_lines(os.path.join(folder, "dev.json"), _cluener(n))
        write_json_lines(os.path.join(folder, "test.json"), _cluener(n, labelled=False))
    else:
        raise ValueError(task)
    return folder
