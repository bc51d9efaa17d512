"""Prediction files in the formats the leaderboards take (CLUE, CLUENER, DuEE, DuEE-fin, DuIE), written atomically.

Each writer is `write(path, records, predictions, labels)`: the records as the dataset's reader gives them, one
prediction per record as the task's `decode` returns it, and the dataset's label set (`DatasetSpec.labels`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from rofjax.decode.events import TRIGGER_ROLE


def _atomic_write(path, text_chunks) -> None:
    path = os.fspath(path)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for chunk in text_chunks:
            f.write(chunk)
    os.replace(tmp, path)


def write_json_lines(path, rows) -> None:
    """One JSON object per line, UTF-8, Chinese unescaped (CLUE's file and submission layout); a reader never
    sees a half-written file."""
    _atomic_write(path, (json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_json(path, value, indent: int | None = None) -> None:
    _atomic_write(path, [json.dumps(value, ensure_ascii=False, indent=indent)])


def json_id(record: dict):
    """A record's id as its file gave it: the readers keep it as JSON text (so an integer id is written back as an
    integer); records without one are named by their source line."""
    if "id" not in record:
        source = record.get("source", record.get("line"))
        return source.decode("utf-8") if isinstance(source, bytes) else source
    try:
        return json.loads(record["id"])
    except (json.JSONDecodeError, TypeError):
        return record["id"]


TNEWS_DESCRIPTIONS = {"100": "news_story", "101": "news_culture", "102": "news_entertainment", "103": "news_sports",
                      "104": "news_finance", "106": "news_house", "107": "news_car", "108": "news_edu",
                      "109": "news_tech", "110": "news_military", "112": "news_travel", "113": "news_world",
                      "114": "news_stock", "115": "news_agriculture", "116": "news_game"}


def classification(path, records, predictions: Sequence[int], labels: Sequence[str]) -> None:
    """`{"id": …, "label": "<label string>"}` per line (CLUE classification, and JSONL classification data)."""
    write_json_lines(path, ({"id": json_id(r), "label": labels[p]} for r, p in zip(records, predictions)))


def tnews(path, records, predictions: Sequence[int], labels: Sequence[str]) -> None:
    """TNEWS adds the `label_desc` its files pair with each label."""
    write_json_lines(path, ({"id": json_id(r), "label": labels[p], "label_desc": TNEWS_DESCRIPTIONS[labels[p]]}
                            for r, p in zip(records, predictions)))


def c3(path, records, predictions: Sequence[int], labels=None) -> None:
    """`{"id": …, "label": <choice index>}` per line."""
    write_json_lines(path, ({"id": json_id(r), "label": int(p)} for r, p in zip(records, predictions)))


def chid(path, records, predictions: Sequence[int], labels=None) -> None:
    """One JSON object `{"#idiomNNNNNN#": candidate index}`."""
    write_json(path, {r["id"]: int(p) for r, p in zip(records, predictions)}, indent=0)


def cmrc2018(path, records, predictions: Sequence[str], labels=None) -> None:
    """One JSON object `{question id: answer text}`."""
    write_json(path, {r["id"]: p for r, p in zip(records, predictions)}, indent=0)


def cluener(path, records, predictions, labels=None) -> None:
    """`{id, label: {type: {entity: [[start, end_inclusive]]}}}` per line, from `(type, start, end_exclusive)`."""

    def row(record, entities):
        label: dict[str, dict[str, list[list[int]]]] = {}
        for kind, start, end in entities:
            label.setdefault(kind, {}).setdefault(record["text"][start:end], []).append([start, end - 1])
        return {"id": record.get("id", record.get("source")), "label": label}

    write_json_lines(path, (row(r, p) for r, p in zip(records, predictions)))


def duie(path, records, predictions, labels=None) -> None:
    """`{text, spo_list: [{subject, predicate, object}]}` per line."""
    write_json_lines(path, ({"text": r["text"], "spo_list": [{"subject": s, "predicate": p, "object": o}
                                                              for s, p, o in sorted(triples)]}
                            for r, triples in zip(records, predictions)))


def duee(path, records, predictions, labels) -> None:
    """DuEE / DuEE-fin lines: events with a trigger, triggers removed, no event contained in another of its type;
    an enumerated pseudo-role on the trigger (DuEE-fin) becomes its real role with the value as argument.
    `labels` is the dataset's `EventSchema`."""
    enum_roles = labels.enum_roles

    def argument(arg) -> tuple[str, str]:
        event_type, role, text, _ = arg
        if (event_type, role) in enum_roles:
            return enum_roles[(event_type, role)][1], role
        return role, text

    def row(record, events):
        kept = []
        for event in sorted(events, key=len, reverse=True):
            if not any(a[1] == TRIGGER_ROLE for a in event):
                continue
            arguments = {argument(a) for a in event if a[1] != TRIGGER_ROLE}
            if any(event[0][0] == t and arguments <= other for t, other in kept):
                continue
            kept.append((event[0][0], arguments))
        return {"id": record["id"], "text": record["text"],
                "event_list": [{"event_type": t, "arguments": [{"role": r, "argument": a} for r, a in sorted(args)]}
                               for t, args in kept]}

    write_json_lines(path, (row(r, p) for r, p in zip(records, predictions)))
