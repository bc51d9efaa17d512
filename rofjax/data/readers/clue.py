"""CLUE files as CLUE publishes them: which files each task has, their label sets, and strict readers.

Every reader yields plain records (str / int / lists) and fails naming the file and line (or, for the single-JSON
files of cmrc2018 and c3, the JSON path of the entry): bad JSON, a missing field, a label outside the task's label
set, an answer that is not among the choices, a chid blank without an answer. Unlabeled test files yield
`label = -1` (cmrc2018: no answers).

Record kinds:

* classification (iflytek, tnews, afqmc, cmnli, ocnli, wsc, csl): `{id, text, pair, label}` — `id` is the file's
  own id as JSON text (so a submission writes it back unchanged), `pair` is "" for single sentences; csl's text is
  its keywords joined by "；", wsc's text has its two spans wrapped in `[[…]]` (the earlier span first).
* cmrc2018: `{id, context, question, answers, answer_starts}` per question.
* c3: `{id, passage, question, choices, label}` per question, the passage's sentences joined by "||".
* chid: `{id, passage, left, right, candidates, label}` per blank (`id` the `#idiomNNNNNN#` tag, `passage` the line
  number, other blanks in `left`/`right` shown as "_____").
* cluener: `{id, text, entities: [(type, start, end_exclusive)]}`.

Lines of cmnli/ocnli whose label is "-" (annotators disagreed) are skipped, as the reference scripts do; any other
unknown label is an error.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator

from rofjax.data.readers.ie import CLUENER_TYPES, read_cluener
from rofjax.data.readers.jsonl import DataFormatError, expect, json_lines, read_text

NLI_LABELS = ("entailment", "neutral", "contradiction")
LABELS: dict[str, tuple[str, ...]] = {
    "iflytek": tuple(str(i) for i in range(119)),
    "tnews": ("100", "101", "102", "103", "104", "106", "107", "108", "109", "110", "112", "113", "114", "115", "116"),
    "afqmc": ("0", "1"),
    "cmnli": NLI_LABELS,
    "ocnli": NLI_LABELS,
    "wsc": ("false", "true"),
    "csl": ("0", "1"),
}
CLASSIFICATION_TASKS = tuple(LABELS)
TASKS = CLASSIFICATION_TASKS + ("cmrc2018", "c3", "chid", "cluener")
KINDS = {**{t: "classification" for t in CLASSIFICATION_TASKS}, "cmrc2018": "cmrc2018", "c3": "c3", "chid": "chid",
         "cluener": "cluener"}

# split → candidate file lists; the first candidate whose files all exist is read (train/dev must exist).
FILES: dict[str, dict[str, tuple[tuple[str, ...], ...]]] = {
    **{t: {"train": (("train.json",),), "validation": (("dev.json",),), "test": (("test.json",),)}
       for t in ("iflytek", "tnews", "afqmc", "cmnli", "wsc", "csl", "cmrc2018", "cluener")},
    "ocnli": {"train": (("train.50k.json",),), "validation": (("dev.json",),), "test": (("test.json",),)},
    "c3": {"train": (("m-train.json", "d-train.json"),), "validation": (("m-dev.json", "d-dev.json"),),
           "test": (("test1.1.json",), ("test1.0.json",))},
    "chid": {"train": (("train.json", "train_answer.json"),), "validation": (("dev.json", "dev_answer.json"),),
             "test": (("test1.1.json",), ("test1.0.json",))},
}
SKIPPED_LABELS = {"cmnli": {"-"}, "ocnli": {"-"}}
C3_PADDING_CHOICE = "无效答案"
CHID_OTHER_BLANK = "_____"
CHID_TAG = re.compile(r"#idiom\d+#")


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown CLUE task {task!r}; expected one of {list(TASKS)}.")


def split_files(task: str, folder: str | os.PathLike, split: str) -> list[str] | None:
    """The files of `split` in `folder`, or None when the split is absent (only test may be)."""
    check_task(task)
    folder = os.fspath(folder)
    for candidate in FILES[task][split]:
        paths = [os.path.join(folder, name) for name in candidate]
        if all(os.path.isfile(p) for p in paths):
            return paths
    return None


def require_folder(task: str, folder: str | os.PathLike) -> dict[str, list[str]]:
    """`{split: files}` for every split present; a wrong folder or a missing train/dev/answer file is named."""
    check_task(task)
    folder = os.fspath(folder or "")
    if not folder:
        raise ValueError(f"config.data.data_dir must be the folder of the CLUE {task} files "
                         f"({_expected(task)}).")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"config.data.data_dir={folder!r} is not a folder (CLUE {task} needs {_expected(task)}).")
    found = {}
    for split in ("train", "validation", "test"):
        paths = split_files(task, folder, split)
        if paths is None and split != "test":
            wanted = FILES[task][split][0]
            missing = [n for n in wanted if not os.path.isfile(os.path.join(folder, n))]
            raise FileNotFoundError(f"{folder}: CLUE {task} {split} split needs {list(wanted)}; missing "
                                    f"{missing}.")
        if paths is not None:
            found[split] = paths
    return found


def _expected(task: str) -> str:
    return ", ".join(n for split in ("train", "validation") for n in FILES[task][split][0])


def read_split(task: str, paths: list[str]) -> Iterator[dict]:
    """Records of one split of `task` from its files (as `split_files` lists them)."""
    check_task(task)
    kind = KINDS[task]
    if kind == "classification":
        return read_classification(task, paths[0])
    if kind == "cmrc2018":
        return read_cmrc2018(paths[0])
    if kind == "c3":
        return (record for path in paths for record in read_c3(path))
    if kind == "chid":
        return read_chid(paths[0], paths[1] if len(paths) > 1 else None)
    return read_cluener(paths[0], list(CLUENER_TYPES))


def _field(record: dict, key: str, where: str, kind=str):
    expect(record, dict, where, "the entry")
    value = record.get(key)
    if not isinstance(value, kind):
        raise DataFormatError(f"{where}: field {key!r} is missing or not a {kind.__name__} (got {value!r}).")
    return value


def mark_wsc_spans(text: str, span1_index: int, span1_text: str, span2_index: int, span2_text: str,
                   where: str = "") -> str:
    """Wrap both spans of a CLUEWSC example in `[[…]]`, the earlier one first (the RoFormerV2 CLUE recipe)."""
    spans = sorted([(span1_index, span1_text), (span2_index, span2_text)])
    for index, span in spans:
        if text[index:index + len(span)] != span:
            raise DataFormatError(f"{where}: span {span!r} is not at index {index} (the text there is "
                                  f"{text[index:index + len(span)]!r}).")
    (a, a_text), (b, b_text) = spans
    if a + len(a_text) > b:
        raise DataFormatError(f"{where}: spans {a_text!r}@{a} and {b_text!r}@{b} overlap.")
    return (text[:a] + "[[" + a_text + "]]" + text[a + len(a_text):b] + "[[" + b_text + "]]"
            + text[b + len(b_text):])


def read_classification(task: str, path: str) -> Iterator[dict]:
    labels = LABELS[task]
    skipped = SKIPPED_LABELS.get(task, set())
    first_labelled = None
    for number, record in json_lines(path):
        where = f"{path}:{number}"
        if task in ("iflytek", "tnews"):
            text, pair = _field(record, "sentence", where), ""
        elif task in ("afqmc", "cmnli", "ocnli"):
            text, pair = _field(record, "sentence1", where), _field(record, "sentence2", where)
        elif task == "csl":
            keywords = _field(record, "keyword", where, list)
            if not all(isinstance(k, str) for k in keywords):
                raise DataFormatError(f"{where}: field 'keyword' must be a list of strings.")
            text, pair = "；".join(keywords), _field(record, "abst", where)
        else:
            target = _field(record, "target", where, dict)
            try:
                text = mark_wsc_spans(_field(record, "text", where), int(target["span1_index"]),
                                      str(target["span1_text"]), int(target["span2_index"]),
                                      str(target["span2_text"]), where)
            except (KeyError, TypeError, ValueError) as error:
                if isinstance(error, DataFormatError):
                    raise
                raise DataFormatError(f"{where}: target needs span1_index, span1_text, span2_index, span2_text "
                                      f"({error}).") from None
            pair = ""
        raw_id = next((record[k] for k in ("id", "idx") if k in record), number - 1)
        # A file is labelled throughout (train, dev) or not at all (test): a record without a label among labelled
        # ones is a damaged line, not a test example to train on with label -1.
        if first_labelled is None:
            first_labelled = (number, "label" in record)
        elif ("label" in record) != first_labelled[1]:
            raise DataFormatError(f"{where}: " + (f"no label, though the record of line {first_labelled[0]} has one"
                                                  if first_labelled[1] else
                                                  f"a label, though the record of line {first_labelled[0]} has none")
                                  + " (a split labels every record, or none: test files).")
        label = -1
        if "label" in record:
            name = str(record["label"])
            if name in skipped:
                continue
            if name not in labels:
                raise DataFormatError(f"{where}: label {record['label']!r} is not one of {task}'s labels "
                                      f"{_show(labels)}.")
            label = labels.index(name)
        yield {"id": json.dumps(raw_id, ensure_ascii=False), "text": text, "pair": pair, "label": label}


def _show(labels) -> str:
    return str(list(labels)) if len(labels) <= 20 else f"[{labels[0]!r} … {labels[-1]!r}] ({len(labels)})"


def _json_file(path: str):
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{path}:{error.lineno}: not valid JSON ({error.msg}, column {error.colno}).") from None


def read_cmrc2018(path: str) -> Iterator[dict]:
    """SQuAD-format CMRC2018. An `answer_start` that does not point at its text is moved to the nearest
    occurrence of the text in the context (the released files have a few off-by-some starts); an answer that
    does not occur in its context at all is an error."""
    data = _json_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataFormatError(f"{path}: expected {{\"data\": [{{\"paragraphs\": […]}}]}} (SQuAD format).")
    for a, article in enumerate(data["data"]):
        expect(article, dict, f"{path}: data[{a}]", "an article")
        for p, paragraph in enumerate(expect(article.get("paragraphs", []), list, f"{path}: data[{a}]",
                                             "'paragraphs'")):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            context = _field(paragraph, "context", where)
            for q, qa in enumerate(_field(paragraph, "qas", where, list)):
                where_q = f"{where}.qas[{q}]"
                qid = _field(qa, "id", where_q)
                question = _field(qa, "question", where_q)
                answers, starts = [], []
                for k, answer in enumerate(expect(qa.get("answers") or [], list, where_q, "'answers'")):
                    if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
                        raise DataFormatError(f"{where_q}.answers[{k}] (id {qid}): needs a text.")
                    text = answer["text"]
                    start = answer.get("answer_start", -1)
                    if (not isinstance(start, int) or isinstance(start, bool)
                            or context[start:start + len(text)] != text):
                        found = [m.start() for m in re.finditer(re.escape(text), context)] if text else []
                        if not found:
                            raise DataFormatError(f"{where_q}.answers[{k}] (id {qid}): answer {text!r} does not "
                                                  f"occur in the context.")
                        start = min(found, key=lambda s: abs(s - (start if isinstance(start, int) else 0)))
                    answers.append(text)
                    starts.append(start)
                yield {"id": qid, "context": context, "question": question, "answers": answers,
                       "answer_starts": starts}


def read_c3(path: str) -> Iterator[dict]:
    data = _json_file(path)
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: expected a JSON list of [sentences, questions, doc_id] entries.")
    for d, entry in enumerate(data):
        where = f"{path}: [{d}]"
        if not (isinstance(entry, list) and len(entry) >= 2 and isinstance(entry[0], list)
                and isinstance(entry[1], list)):
            raise DataFormatError(f"{where}: expected [[context sentences], [questions], doc_id].")
        passage = "||".join(str(s) for s in entry[0])
        for q, item in enumerate(entry[1]):
            where_q = f"{where}[1][{q}]"
            question = _field(item, "question", where_q)
            choices = _field(item, "choice", where_q, list)
            if not 1 <= len(choices) <= 4 or not all(isinstance(c, str) for c in choices):
                raise DataFormatError(f"{where_q}: 'choice' must list 1 to 4 strings (got {choices!r}).")
            label = -1
            if "answer" in item:
                if item["answer"] not in choices:
                    raise DataFormatError(f"{where_q}: answer {item['answer']!r} is not one of the choices "
                                          f"{choices}.")
                label = choices.index(item["answer"])
            qid = item.get("id", f"{entry[2] if len(entry) > 2 else d}-{q}")
            yield {"id": json.dumps(qid, ensure_ascii=False), "passage": passage, "question": question,
                   "choices": list(choices), "label": label}


def read_chid_answers(path: str) -> dict[str, int]:
    """`{"#idiomNNNNNN#": candidate index}` — one JSON object, or one object per line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found (chid needs the answer file next to its data file).")
    text = read_text(path)
    try:
        answers = json.loads(text)
    except json.JSONDecodeError:
        answers = {}
        for _, record in json_lines(path):
            answers.update(record)
    if not isinstance(answers, dict):
        raise DataFormatError(f"{path}: expected a JSON object {{\"#idiomNNNNNN#\": index}}.")
    for tag, index in answers.items():
        if not isinstance(index, int) or isinstance(index, bool):
            raise DataFormatError(f"{path}: answer of {tag} is {index!r}, not a candidate index.")
    return answers


def read_chid(path: str, answer_path: str | None) -> Iterator[dict]:
    answers = read_chid_answers(answer_path) if answer_path else None
    for number, record in json_lines(path):
        where = f"{path}:{number}"
        candidates = _field(record, "candidates", where, list)
        contents = _field(record, "content", where, list)
        if not candidates or not all(isinstance(c, str) for c in candidates):
            raise DataFormatError(f"{where}: 'candidates' must be a non-empty list of idioms.")
        blanks = 0
        for content in contents:
            if not isinstance(content, str):
                raise DataFormatError(f"{where}: 'content' must be a list of strings.")
            tags = list(CHID_TAG.finditer(content))
            for tag in tags:
                left = CHID_TAG.sub(CHID_OTHER_BLANK, content[:tag.start()])
                right = CHID_TAG.sub(CHID_OTHER_BLANK, content[tag.end():])
                label = -1
                if answers is not None:
                    if tag.group() not in answers:
                        raise DataFormatError(f"{where}: blank {tag.group()} has no answer in {answer_path}.")
                    label = answers[tag.group()]
                    if not 0 <= label < len(candidates):
                        raise DataFormatError(f"{answer_path}: answer {label} of {tag.group()} ({where}) is not a "
                                              f"candidate index 0…{len(candidates) - 1}.")
                blanks += 1
                yield {"id": tag.group(), "passage": number, "left": left, "right": right,
                       "candidates": list(candidates), "label": label}
        if not blanks:
            raise DataFormatError(f"{where}: no #idiomNNNNNN# blank in the content.")
