"""DuEE 1.0 and DuIE files: strict readers, and a seeded generator of data in the same formats with known answers.

Readers check every line and fail naming the file and line: bad JSON, an offset outside the text, an argument
whose text is not at its offset, an event type or role missing from the schema, a predicate missing from the
schema.

The generator fills templates in which one sentence holds several events, events share a trigger (two 入狱
events, one 有期徒刑) or an argument (one winner beating two rivals), spans nest (a company inside the asset it
sells), and several event types mix. Its output is written as `duee_{train,dev}.json` + `duee_event_schema.json`
or `duie_{train,dev}.json` + `duie_schema.json` so that the real loaders read it.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator

TRIGGER_ROLE = "触发词"


class DataFormatError(ValueError):
    """A malformed line of a dataset file; the message starts with `file:line:`."""


# Readers --------------------------------------------------------------------------------------------------------

def _json_lines(path) -> Iterator[tuple[int, dict]]:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found.")
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFormatError(f"{path}:{number}: not valid JSON ({error.msg}, column {error.colno}).") from None
            if not isinstance(record, dict):
                raise DataFormatError(f"{path}:{number}: expected a JSON object.")
            yield number, record


def read_duee_schema(path) -> dict[str, list[str]]:
    """`{event_type: [roles...]}` in file order (the trigger role is not listed)."""
    schema = {}
    for number, record in _json_lines(path):
        try:
            schema[record["event_type"]] = [r["role"] for r in record["role_list"]]
        except (KeyError, TypeError):
            raise DataFormatError(f"{path}:{number}: a schema line needs event_type and role_list[].role.") from None
    return schema


def duee_labels(schema: dict[str, list[str]]) -> list[tuple[str, str]]:
    """GPLinker's argument classes: `(event_type, role)` for the trigger and every role, schema order."""
    return [(event_type, role) for event_type, roles in schema.items() for role in [TRIGGER_ROLE] + roles]


def read_duee(path, schema: dict[str, list[str]]) -> Iterator[dict]:
    """Validated DuEE records `{id, text, events: [[(type, role, argument, start), ...]]}`; test files (no
    `event_list`) give `events=None`."""
    for number, record in _json_lines(path):
        where = f"{path}:{number}"
        text = record.get("text")
        if not isinstance(text, str):
            raise DataFormatError(f"{where}: missing text.")
        if "event_list" not in record:
            yield {"id": record.get("id", str(number)), "text": text, "events": None, "line": number}
            continue
        events = []
        for event in record["event_list"]:
            event_type = event.get("event_type")
            if event_type not in schema:
                raise DataFormatError(f"{where}: event type {event_type!r} is not in the schema.")
            arguments = []
            if "trigger" in event:
                arguments.append((TRIGGER_ROLE, event["trigger"], event.get("trigger_start_index")))
            for argument in event.get("arguments", []):
                role = argument.get("role")
                if role not in schema[event_type]:
                    raise DataFormatError(f"{where}: role {role!r} is not a role of {event_type!r} in the schema.")
                arguments.append((role, argument.get("argument"), argument.get("argument_start_index")))
            checked = []
            for role, value, start in arguments:
                if not isinstance(value, str) or not value:
                    raise DataFormatError(f"{where}: {event_type}/{role} has no argument text.")
                if not isinstance(start, int) or start < 0 or start + len(value) > len(text):
                    raise DataFormatError(f"{where}: offset {start} of {event_type}/{role} {value!r} is outside the "
                                          f"text (length {len(text)}).")
                if text[start:start + len(value)] != value:
                    raise DataFormatError(f"{where}: {event_type}/{role} {value!r} is not at offset {start} (the "
                                          f"text there is {text[start:start + len(value)]!r}).")
                checked.append((event_type, role, value, start))
            events.append(sorted(set(checked)))
        yield {"id": record.get("id", str(number)), "text": text, "events": events, "line": number}


def read_duie_schema(path) -> list[str]:
    predicates = []
    for number, record in _json_lines(path):
        if "predicate" not in record:
            raise DataFormatError(f"{path}:{number}: a schema line needs a predicate.")
        if record["predicate"] not in predicates:
            predicates.append(record["predicate"])
    return predicates


def read_duie(path, predicates: list[str]) -> Iterator[dict]:
    """Validated DuIE records `{text, triples: [(subject, predicate, object)]}` (no offsets in this format: the
    subject and object must occur in the text)."""
    for number, record in _json_lines(path):
        where = f"{path}:{number}"
        text = record.get("text")
        if not isinstance(text, str):
            raise DataFormatError(f"{where}: missing text.")
        triples = []
        for spo in record.get("spo_list", []):
            predicate = spo.get("predicate")
            if predicate not in predicates:
                raise DataFormatError(f"{where}: predicate {predicate!r} is not in the schema.")
            for side in ("subject", "object"):
                if not isinstance(spo.get(side), str) or spo[side] not in text:
                    raise DataFormatError(f"{where}: {side} {spo.get(side)!r} does not occur in the text.")
            triples.append((spo["subject"], predicate, spo["object"]))
        yield {"text": text, "triples": sorted(set(triples)), "line": number}


# Generator ------------------------------------------------------------------------------------------------------

GENERATED_SCHEMA = {
    "司法行为-入狱": ["时间", "入狱者", "刑期"],
    "组织关系-裁员": ["时间", "裁员方", "裁员人数"],
    "竞赛行为-胜负": ["时间", "败者", "胜者", "赛事名称"],
    "财经/交易-出售/收购": ["时间", "出售方", "交易物", "收购方"],
}
_PEOPLE = ["程杰", "王绍伟", "李明", "张伟", "刘洋", "陈静", "杨帆", "赵磊", "黄勇", "周敏", "吴昊", "徐丽"]
_COMPANIES = ["雀巢", "华为", "腾讯", "阿里巴巴", "小米", "京东", "百度", "联想", "海尔", "格力", "美团", "网易"]
_TEAMS = ["湖人", "火箭", "勇士", "凯尔特人", "热火", "马刺", "快船", "雄鹿"]
_CUPS = ["总决赛", "季后赛", "常规赛", "全明星赛"]
_TIMES = ["昨天", "今天上午", "3月5日", "去年", "周一晚间", "近日"]
_ASSETS = ["手机业务", "云计算部门", "家电品牌", "物流公司"]


class _Builder:
    def __init__(self):
        self.text = ""
        self.events: list[dict] = []

    def add(self, piece: str) -> int:
        start = len(self.text)
        self.text += piece
        return start

    def event(self, event_type: str, trigger: tuple[str, int], arguments: list[tuple[str, str, int]]):
        self.events.append({"event_type": event_type, "trigger": trigger[0], "trigger_start_index": trigger[1],
                            "arguments": [{"argument_start_index": s, "role": r, "argument": a, "alias": []}
                                          for r, a, s in arguments], "class": event_type.split("-")[0]})


def _prison(b: _Builder, rng: random.Random):
    p1, p2 = rng.sample(_PEOPLE, 2)
    y1, y2 = rng.sample(range(2, 25), 2)
    when = rng.choice(_TIMES)
    t = b.add(when)
    b.add("，")
    s1 = b.add(p1)
    b.add("、")
    s2 = b.add(p2)
    b.add("被法院一审判处")
    trigger = b.add("有期徒刑")
    a1 = b.add(f"{y1}年")
    b.add("和")
    a2 = b.add(f"{y2}年")
    b.add("。")
    for person, ps, years, ys in ((p1, s1, y1, a1), (p2, s2, y2, a2)):   # two events share the trigger
        b.event("司法行为-入狱", ("有期徒刑", trigger),
                [("时间", when, t), ("入狱者", person, ps), ("刑期", f"{years}年", ys)])


def _layoff(b: _Builder, rng: random.Random):
    company, count = rng.choice(_COMPANIES), rng.choice([200, 800, 1500, 4000, 12000])
    c = b.add(company)
    trigger = b.add("裁员")
    n = b.add(f"{count}人")
    b.add("。")
    b.event("组织关系-裁员", ("裁员", trigger), [("裁员方", company, c), ("裁员人数", f"{count}人", n)])


def _wins(b: _Builder, rng: random.Random):
    winner, loser1, loser2 = rng.sample(_TEAMS, 3)
    cup = rng.choice(_CUPS)
    w = b.add(winner)
    b.add("在")
    c = b.add(cup)
    b.add("中")
    t1 = b.add("击败")
    l1 = b.add(loser1)
    b.add("后，又")
    t2 = b.add("战胜")
    b.add("了")
    l2 = b.add(loser2)
    b.add("。")
    for trigger, ts, loser, ls in (("击败", t1, loser1, l1), ("战胜", t2, loser2, l2)):   # shared winner and cup
        b.event("竞赛行为-胜负", (trigger, ts), [("胜者", winner, w), ("败者", loser, ls), ("赛事名称", cup, c)])


def _acquisition(b: _Builder, rng: random.Random):
    buyer, seller = rng.sample(_COMPANIES, 2)
    asset = rng.choice(_ASSETS)
    when = rng.choice(_TIMES)
    t = b.add(when)
    by = b.add(buyer)
    trigger = b.add("收购")
    b.add("了")
    item = b.add(seller + asset)                        # nested: the seller inside the asset sold
    b.add("。")
    b.event("财经/交易-出售/收购", ("收购", trigger),
            [("时间", when, t), ("收购方", buyer, by), ("交易物", seller + asset, item), ("出售方", seller, item)])


_TEMPLATES = (_prison, _layoff, _wins, _acquisition)


def generate_duee(count: int, seed: int) -> list[dict]:
    """`count` DuEE-format records; each sentence joins one to three templates (several event types mix)."""
    rng = random.Random(seed)
    records = []
    for index in range(count):
        b = _Builder()
        for template in rng.sample(_TEMPLATES, rng.randint(1, 3)):
            template(b, rng)
        records.append({"text": b.text, "id": f"gen-{seed}-{index}", "event_list": b.events})
    return records


def generate_duie(count: int, seed: int) -> list[dict]:
    """`count` DuIE-format records with one to three triples each (a subject may head several triples)."""
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        pieces, triples = [], []
        for _ in range(rng.randint(1, 3)):
            person, company = rng.choice(_PEOPLE), rng.choice(_COMPANIES)
            if rng.random() < 0.5:
                pieces.append(f"{person}是{company}的创始人")
                triples.append({"subject": company, "predicate": "创始人", "object": person,
                                "subject_type": "企业", "object_type": "人物"})
            else:
                team = rng.choice(_TEAMS)
                pieces.append(f"{person}效力于{team}队")
                triples.append({"subject": person, "predicate": "所属球队", "object": team + "队",
                                "subject_type": "人物", "object_type": "球队"})
        records.append({"text": "，".join(pieces) + "。", "spo_list": triples})
    return records


def _write_lines(path, records):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def write_generated_duee(folder, *, train: int = 2000, dev: int = 300, seed: int = 0) -> str:
    os.makedirs(folder, exist_ok=True)
    _write_lines(os.path.join(folder, "duee_event_schema.json"),
                 [{"event_type": t, "role_list": [{"role": r} for r in roles], "class": t.split("-")[0]}
                  for t, roles in GENERATED_SCHEMA.items()])
    _write_lines(os.path.join(folder, "duee_train.json"), generate_duee(train, seed))
    _write_lines(os.path.join(folder, "duee_dev.json"), generate_duee(dev, seed + 1_000_003))
    return os.fspath(folder)


def write_generated_duie(folder, *, train: int = 2000, dev: int = 300, seed: int = 0) -> str:
    os.makedirs(folder, exist_ok=True)
    _write_lines(os.path.join(folder, "duie_schema.json"),
                 [{"subject_type": "企业", "predicate": "创始人", "object_type": "人物"},
                  {"subject_type": "人物", "predicate": "所属球队", "object_type": "球队"}])
    _write_lines(os.path.join(folder, "duie_train.json"), generate_duie(train, seed))
    _write_lines(os.path.join(folder, "duie_dev.json"), generate_duie(dev, seed + 1_000_003))
    return os.fspath(folder)


CLUENER_TYPES = ["address", "book", "company", "game", "government", "movie", "name", "organization", "position",
                 "scene"]


def read_cluener(path, types: list[str] | None = None) -> Iterator[dict]:
    """CLUENER2020 lines → `{id, text, entities: [(type, start, end_exclusive)]}` (`entities=None` on test lines).

    Spans are stored `[start, end]` with an inclusive end; each must lie in the text and spell its entity string.
    """
    types = types or CLUENER_TYPES
    for number, record in _json_lines(path):
        where = f"{path}:{number}"
        text = record.get("text")
        if not isinstance(text, str):
            raise DataFormatError(f"{where}: missing text.")
        if "label" not in record:
            yield {"id": record.get("id", number - 1), "text": text, "entities": None, "line": number}
            continue
        entities = []
        for kind, mentions in record["label"].items():
            if kind not in types:
                raise DataFormatError(f"{where}: entity type {kind!r} is not one of {types}.")
            for mention, spans in mentions.items():
                for span in spans:
                    if not (isinstance(span, list) and len(span) == 2 and 0 <= span[0] <= span[1] < len(text)):
                        raise DataFormatError(f"{where}: span {span} of {kind} {mention!r} is outside the text "
                                              f"(length {len(text)}).")
                    if text[span[0]:span[1] + 1] != mention:
                        raise DataFormatError(f"{where}: {kind} {mention!r} is not at {span} (the text there is "
                                              f"{text[span[0]:span[1] + 1]!r}).")
                    entities.append((kind, span[0], span[1] + 1))
        yield {"id": record.get("id", number - 1), "text": text, "entities": sorted(set(entities)), "line": number}


def cluener_official_f1(predicted: list[dict[str, set[str]]], gold: list[dict[str, set[str]]],
                        types: list[str] | None = None) -> dict[str, float]:
    """CLUENER's `score.py`: per type, TP/FP/FN over the sets of entity strings of each sentence; macro F1."""
    types = types or CLUENER_TYPES
    per_type = {}
    for kind in types:
        tp = fp = fn = 0
        for p, g in zip(predicted, gold, strict=True):
            ps, gs = set(p.get(kind, ())), set(g.get(kind, ()))
            tp += len(ps & gs)
            fp += len(ps - gs)
            fn += len(gs - ps)
        per_type[kind] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"macro_f1": sum(per_type.values()) / len(types), **{f"f1/{k}": v for k, v in per_type.items()}}


# DuEE-fin --------------------------------------------------------------------------------------------------------

def normalize_whitespace(text: str) -> str:
    """GPLinker's DuEE-fin `normalize`: runs of whitespace become one space."""
    return " ".join(text.split())


def read_duee_fin_schema(path) -> tuple[dict[str, list[str]], dict[tuple[str, str], tuple[str, str]]]:
    """`(schema, enum_roles)`: a role with `enum_items` (e.g. 公司上市/环节) is replaced in the schema by one
    pseudo-role per value, which labels the trigger span (kexue.fm 8926 §1.2); `enum_roles` maps
    `(event_type, value)` back to `(event_type, role)`."""
    schema, enum_roles = {}, {}
    for number, record in _json_lines(path):
        try:
            event_type, role_list = record["event_type"], record["role_list"]
            roles = []
            for role in role_list:
                if role.get("enum_items"):
                    for value in role["enum_items"]:
                        roles.append(value)
                        enum_roles[(event_type, value)] = (event_type, role["role"])
                else:
                    roles.append(role["role"])
        except (KeyError, TypeError, AttributeError):
            raise DataFormatError(f"{path}:{number}: a schema line needs event_type and role_list[].role.") from None
        schema[event_type] = roles
    return schema, enum_roles


def read_duee_fin(path, schema: dict[str, list[str]], enum_roles: dict) -> Iterator[dict]:
    """DuEE-fin documents as `{id, text, events}` like `read_duee`: text = normalised title + newline + text,
    offsets = first occurrence (the format has none), enumerated arguments attached to the trigger span."""
    for number, record in _json_lines(path):
        where = f"{path}:{number}"
        if not isinstance(record.get("text"), str):
            raise DataFormatError(f"{where}: missing text.")
        text = normalize_whitespace(record.get("title", "") + "\n" + record["text"])
        if "event_list" not in record:
            yield {"id": record.get("id", str(number)), "text": text, "events": None, "line": number}
            continue
        events = []
        for event in record["event_list"]:
            event_type = event.get("event_type")
            if event_type not in schema:
                raise DataFormatError(f"{where}: event type {event_type!r} is not in the schema.")
            trigger = normalize_whitespace(event.get("trigger", ""))
            start = text.find(trigger) if trigger else -1
            if start < 0:
                raise DataFormatError(f"{where}: trigger {trigger!r} of {event_type} does not occur in the text.")
            arguments = [(event_type, TRIGGER_ROLE, trigger, start)]
            for argument in event.get("arguments", []):
                role, value = argument.get("role"), normalize_whitespace(str(argument.get("argument", "")))
                enum = next(((t, v) for (t, v), (_, r) in enum_roles.items()
                             if t == event_type and r == role and v == value), None)
                if enum is not None:
                    arguments.append((event_type, value, trigger, start))
                    continue
                if role not in schema[event_type]:
                    raise DataFormatError(f"{where}: role {role!r} is not a role of {event_type!r} in the schema.")
                position = text.find(value) if value else -1
                if position < 0:
                    raise DataFormatError(f"{where}: {event_type}/{role} {value!r} does not occur in the text.")
                arguments.append((event_type, role, value, position))
            events.append(sorted(set(arguments)))
        yield {"id": record.get("id", str(number)), "text": text, "events": events, "line": number}
