"""DuEE 1.0, DuEE-fin, DuIE and CLUENER2020 files: strict readers.

Readers check every line and fail naming the file and line: bad JSON, an offset outside the text, an argument
whose text is not at its offset, an event type or role missing from the schema, a predicate missing from the
schema. Data in these formats with known answers: `rofjax.data.synthetic`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

from rofjax.data.readers.jsonl import DataFormatError, expect, json_lines
from rofjax.decode.events import TRIGGER_ROLE


@dataclasses.dataclass(frozen=True)
class EventSchema:
    """An event dataset's label set: roles per event type (DuEE-fin: one pseudo-role per enumerated value) and
    the map `(event_type, value) → (event_type, role)` of those enumerated values."""

    roles: dict[str, list[str]]
    enum_roles: dict[tuple[str, str], tuple[str, str]] = dataclasses.field(default_factory=dict)

    @property
    def labels(self) -> list[tuple[str, str]]:
        return duee_labels(self.roles)


def read_duee_schema(path) -> dict[str, list[str]]:
    """`{event_type: [roles...]}` in file order (the trigger role is not listed)."""
    schema = {}
    for number, record in json_lines(path):
        try:
            event_type, roles = record["event_type"], [r["role"] for r in record["role_list"]]
        except (KeyError, TypeError):
            raise DataFormatError(f"{path}:{number}: a schema line needs event_type and role_list[].role.") from None
        expect(event_type, str, f"{path}:{number}", "event_type")
        for role in roles:
            expect(role, str, f"{path}:{number}", f"a role of {event_type}")
        schema[event_type] = roles
    return schema


def duee_labels(schema: dict[str, list[str]]) -> list[tuple[str, str]]:
    """GPLinker's argument classes: `(event_type, role)` for the trigger and every role, schema order."""
    return [(event_type, role) for event_type, roles in schema.items() for role in [TRIGGER_ROLE] + roles]


def _event_lines(path, schema: dict[str, list[str]], text_of, parse_event) -> Iterator[dict]:
    """The line loop both event formats share: `text_of(record, where)` is the text, `parse_event(event, text,
    where)` one event's sorted argument tuples (its type already checked against the schema); lines without an
    `event_list` (test files) give `events=None`."""
    for number, record in json_lines(path):
        where = f"{path}:{number}"
        if "text" not in record:
            raise DataFormatError(f"{where}: missing text.")
        expect(record["text"], str, where, "text")
        text = text_of(record, where)
        events = None
        if "event_list" in record:
            events = []
            for k, event in enumerate(expect(record["event_list"], list, where, "event_list")):
                expect(event, dict, where, f"event_list[{k}]")
                if not isinstance(event.get("event_type"), str) or event["event_type"] not in schema:
                    raise DataFormatError(f"{where}: event type {event.get('event_type')!r} is not in the schema.")
                events.append(sorted(set(parse_event(event, text, where))))
        yield {"id": record.get("id", str(number)), "text": text, "events": events, "line": number}


def read_duee(path, schema: dict[str, list[str]]) -> Iterator[dict]:
    """Validated DuEE records `{id, text, events: [[(type, role, argument, start), ...]]}`; test files (no
    `event_list`) give `events=None`."""

    def parse_event(event, text, where):
        event_type = event["event_type"]
        arguments = []
        if "trigger" in event:
            arguments.append((TRIGGER_ROLE, event["trigger"], event.get("trigger_start_index")))
        for k, argument in enumerate(expect(event.get("arguments", []), list, where, f"{event_type} arguments")):
            expect(argument, dict, where, f"{event_type} arguments[{k}]")
            role = argument.get("role")
            if role not in schema[event_type]:
                raise DataFormatError(f"{where}: role {role!r} is not a role of {event_type!r} in the schema.")
            arguments.append((role, argument.get("argument"), argument.get("argument_start_index")))
        for role, value, start in arguments:
            if not isinstance(value, str) or not value:
                raise DataFormatError(f"{where}: {event_type}/{role} has no argument text.")
            expect(start, int, where, f"the start index of {event_type}/{role} {value!r}")
            if start < 0 or start + len(value) > len(text):
                raise DataFormatError(f"{where}: offset {start} of {event_type}/{role} {value!r} is outside the "
                                      f"text (length {len(text)}).")
            if text[start:start + len(value)] != value:
                raise DataFormatError(f"{where}: {event_type}/{role} {value!r} is not at offset {start} (the "
                                      f"text there is {text[start:start + len(value)]!r}).")
            yield event_type, role, value, start

    return _event_lines(path, schema, lambda record, where: record["text"], parse_event)


def read_duie_schema(path) -> list[str]:
    predicates = []
    for number, record in json_lines(path):
        if "predicate" not in record:
            raise DataFormatError(f"{path}:{number}: a schema line needs a predicate.")
        expect(record["predicate"], str, f"{path}:{number}", "predicate")
        if record["predicate"] not in predicates:
            predicates.append(record["predicate"])
    return predicates


def read_duie(path, predicates: list[str]) -> Iterator[dict]:
    """Validated DuIE records `{text, triples: [(subject, predicate, object)]}` (no offsets in this format: the
    subject and object must occur in the text)."""
    for number, record in json_lines(path):
        where = f"{path}:{number}"
        if "text" not in record:
            raise DataFormatError(f"{where}: missing text.")
        text = expect(record["text"], str, where, "text")
        triples = []
        for k, spo in enumerate(expect(record.get("spo_list", []), list, where, "spo_list")):
            expect(spo, dict, where, f"spo_list[{k}]")
            predicate = spo.get("predicate")
            if predicate not in predicates:
                raise DataFormatError(f"{where}: predicate {predicate!r} is not in the schema.")
            for side in ("subject", "object"):
                expect(spo.get(side), str, where, f"the {side} of {predicate}")
                if spo[side] not in text:
                    raise DataFormatError(f"{where}: {side} {spo.get(side)!r} does not occur in the text.")
            triples.append((spo["subject"], predicate, spo["object"]))
        yield {"text": text, "triples": sorted(set(triples)), "line": number}


CLUENER_TYPES = ["address", "book", "company", "game", "government", "movie", "name", "organization", "position",
                 "scene"]


def read_cluener(path, types: list[str] | None = None) -> Iterator[dict]:
    """CLUENER2020 lines → `{id, text, entities: [(type, start, end_exclusive)]}` (`entities=None` on test lines).

    Spans are stored `[start, end]` with an inclusive end; each must lie in the text and spell its entity string.
    """
    types = types or CLUENER_TYPES
    for number, record in json_lines(path):
        where = f"{path}:{number}"
        if "text" not in record:
            raise DataFormatError(f"{where}: missing text.")
        text = expect(record["text"], str, where, "text")
        if "label" not in record:
            yield {"id": record.get("id", number - 1), "text": text, "entities": None, "line": number}
            continue
        entities = cluener_entities(record["label"], text, where, types)
        yield {"id": record.get("id", number - 1), "text": text, "entities": sorted(set(entities)), "line": number}


def cluener_entities(label, text: str, where: str, types: Sequence[str] | None) -> list[tuple[str, int, int]]:
    """CLUENER's `label` `{type: {mention: [[start, end_inclusive], ...]}}` → `(type, start, end_exclusive)`; each
    span must lie in the text and spell its mention; `types` (when given) lists the allowed types."""
    entities = []
    label = expect(label, dict, where, 'label (an object {type: {mention: [[start, end], ...]}})')
    for kind, mentions in label.items():
        if types is not None and kind not in types:
            raise DataFormatError(f"{where}: entity type {kind!r} is not one of {list(types)}.")
        expect(mentions, dict, where, f"label[{kind!r}] (an object {{mention: [[start, end], ...]}})")
        for mention, spans in mentions.items():
            for span in expect(spans, list, where, f"the spans of {kind} {mention!r}"):
                if not (isinstance(span, list) and len(span) == 2
                        and all(isinstance(i, int) and not isinstance(i, bool) for i in span)):
                    raise DataFormatError(f"{where}: span {span!r} of {kind} {mention!r} must be [start, end] "
                                          f"(two integers).")
                if not 0 <= span[0] <= span[1] < len(text):
                    raise DataFormatError(f"{where}: span {span} of {kind} {mention!r} is outside the text "
                                          f"(length {len(text)}).")
                if text[span[0]:span[1] + 1] != mention:
                    raise DataFormatError(f"{where}: {kind} {mention!r} is not at {span} (the text there is "
                                          f"{text[span[0]:span[1] + 1]!r}).")
                entities.append((kind, span[0], span[1] + 1))
    return entities


# DuEE-fin --------------------------------------------------------------------------------------------------------

def normalize_whitespace(text: str) -> str:
    """GPLinker's DuEE-fin `normalize`: runs of whitespace become one space."""
    return " ".join(text.split())


def read_duee_fin_schema(path) -> tuple[dict[str, list[str]], dict[tuple[str, str], tuple[str, str]]]:
    """`(schema, enum_roles)`: a role with `enum_items` (e.g. 公司上市/环节) is replaced in the schema by one
    pseudo-role per value, which labels the trigger span (kexue.fm 8926 §1.2); `enum_roles` maps
    `(event_type, value)` back to `(event_type, role)`."""
    schema, enum_roles = {}, {}
    for number, record in json_lines(path):
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
        expect(event_type, str, f"{path}:{number}", "event_type")
        for role in roles:
            expect(role, str, f"{path}:{number}", f"a role or enum_items value of {event_type}")
        schema[event_type] = roles
    return schema, enum_roles


def read_duee_fin(path, schema: dict[str, list[str]], enum_roles: dict) -> Iterator[dict]:
    """DuEE-fin documents as `{id, text, events}` like `read_duee`: text = normalised title + newline + text,
    offsets = first occurrence (the format has none), enumerated arguments attached to the trigger span."""

    def parse_event(event, text, where):
        event_type = event["event_type"]
        trigger = normalize_whitespace(expect(event.get("trigger", ""), str, where, f"the trigger of {event_type}"))
        start = text.find(trigger) if trigger else -1
        if start < 0:
            raise DataFormatError(f"{where}: trigger {trigger!r} of {event_type} does not occur in the text.")
        yield event_type, TRIGGER_ROLE, trigger, start
        for k, argument in enumerate(expect(event.get("arguments", []), list, where, f"{event_type} arguments")):
            expect(argument, dict, where, f"{event_type} arguments[{k}]")
            role, value = argument.get("role"), normalize_whitespace(str(argument.get("argument", "")))
            if (event_type, value) in enum_roles and enum_roles[(event_type, value)][1] == role:
                yield event_type, value, trigger, start
                continue
            if role not in schema[event_type]:
                raise DataFormatError(f"{where}: role {role!r} is not a role of {event_type!r} in the schema.")
            position = text.find(value) if value else -1
            if position < 0:
                raise DataFormatError(f"{where}: {event_type}/{role} {value!r} does not occur in the text.")
            yield event_type, role, value, position

    def text_of(record, where):
        title = expect(record.get("title", ""), str, where, "title")
        return normalize_whitespace(title + "\n" + record["text"])

    return _event_lines(path, schema, text_of, parse_event)
