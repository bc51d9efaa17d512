"""JSON-lines files: the line reader every format here shares, and classification data in JSONL.

`read_classification(path, labels, ...)` reads one example per line, `{"text": …, "pair": …, "label": …}` by
default (the keys are arguments); a label may be the label string or its index in `labels`. Errors name the file
and line.

Files are UTF-8; a leading BOM is dropped, and a byte that is not UTF-8 is a `DataFormatError` naming its line
(`text_lines`) or its line and byte offset (`read_text`, for files that are one JSON document).
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Iterator, Sequence


class DataFormatError(ValueError):
    """A malformed line of a dataset file; the message starts with `file:line:`."""


# Readers --------------------------------------------------------------------------------------------------------

def _decode(data: bytes, path, line: int, skip: int = 0, whole_file: bool = False) -> str:
    """`data` (one line, or with `whole_file` a whole file) as UTF-8, or a DataFormatError naming the line and the
    first byte that is not UTF-8, its position counted in raw bytes, BOM included, so that a hex editor finds it;
    `skip` bytes (a BOM) are not text."""
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = skip + error.start
        if whole_file:
            line += data[:offset].count(b"\n")
            where = f"byte offset {offset}"
        else:
            where = f"byte {offset + 1} of the line"
        raise DataFormatError(f"{path}:{line}: not UTF-8 (byte 0x{data[offset]:02x} at {where}); save the file as "
                              f"UTF-8.") from None


def _bom(data: bytes) -> int:
    return len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0


def text_lines(path) -> Iterator[tuple[int, str]]:
    """`(line number, line)` of a UTF-8 text file, line endings removed; a leading BOM (as Windows editors write
    it) is dropped. Lines are decoded one at a time so that an undecodable byte is reported with its line rather
    than with an offset into some internal read buffer."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found.")
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            yield number, _decode(raw, path, number, skip=_bom(raw) if number == 1 else 0).rstrip("\r\n")


def read_text(path) -> str:
    """A whole UTF-8 file as text (BOM dropped); an undecodable byte is reported with its line and byte offset."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found.")
    with open(path, "rb") as f:
        return decode_utf8(f.read(), path)


def decode_utf8(data: bytes, name) -> str:
    """The contents `data` of file `name` as text, as `read_text` decodes them."""
    return _decode(data, name, 1, skip=_bom(data), whole_file=True)


def json_lines(path) -> Iterator[tuple[int, dict]]:
    path = os.fspath(path)
    for number, line in text_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFormatError(f"{path}:{number}: not valid JSON ({error.msg}, column {error.colno}).") from None
        if not isinstance(record, dict):
            raise DataFormatError(f"{path}:{number}: expected a JSON object, got {_kind(record)}.")
        yield number, record


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object",
               bool: "a boolean"}


def _kind(value) -> str:
    """The JSON name of a value's type, for messages about a field of the wrong type."""
    if value is None:
        return "null"
    # bool is tried before int: to isinstance, true and false are integers.
    names = reversed(_KIND_NAMES.items())
    return next((name for kind, name in names if isinstance(value, kind)), type(value).__name__)


def expect(value, kind: type | tuple[type, ...], where: str, what: str):
    """`value` when it is a `kind` (JSON's true/false do not count as integers), else a DataFormatError
    `"{where}: {what} must be …, got …"`."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):
        return value
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    names = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
    raise DataFormatError(f"{where}: {what} must be {names}, got {_kind(value)} ({shown}).")


def read_classification(path, labels: Sequence[str], *, text_key: str = "text", pair_key: str | None = None,
                        label_key: str = "label", labelled: bool = False, indices: bool = True) -> Iterator[dict]:
    """`{id, text, pair, label}` records (`label` the index in `labels`; -1 on a line without one, as in a test
    file; `pair` "" for single sentences). `labelled=True` (train and dev files) makes a missing label an error;
    `indices=False` takes label names only (an integer is then a name, not an index)."""
    index = {str(label): i for i, label in enumerate(labels)}
    for number, record in json_lines(path):
        where = f"{path}:{number}"
        if text_key not in record:
            raise DataFormatError(f"{where}: missing text field {text_key!r} (the record has {sorted(record)}).")
        text = expect(record[text_key], str, where, f"field {text_key!r}")
        pair = expect(record.get(pair_key, ""), str, where, f"field {pair_key!r}") if pair_key else ""
        label = -1
        if labelled and label_key not in record:
            raise DataFormatError(f"{where}: no {label_key!r} field; train and dev lines need a label.")
        if label_key in record:
            value = record[label_key]
            if indices and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
                label = value
            elif isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) in index:
                label = index[str(value)]
            else:
                raise DataFormatError(f"{where}: label {value!r} is not one of {list(labels)}.")
        yield {"id": json.dumps(record.get("id", number - 1), ensure_ascii=False), "text": text, "pair": pair,
               "label": label}


# Span NER in JSON lines -------------------------------------------------------------------------------------------

def _offset_entity(entity, text: str, where: str, index: int) -> tuple[str, int, int]:
    """One entity of an `entities` list: `{"type"|"label", "start"|"start_offset", "end"|"end_offset"}` (doccano
    writes the `_offset` names) or `[type, start, end]`; end exclusive."""
    what = f"entities[{index}]"
    if isinstance(entity, dict):
        kind = entity.get("type", entity.get("label"))
        start = entity.get("start", entity.get("start_offset"))
        end = entity.get("end", entity.get("end_offset"))
        if kind is None or start is None or end is None:
            raise DataFormatError(f"{where}: {what} needs type (or label), start and end (or start_offset and "
                                  f"end_offset); got keys {sorted(entity)}.")
    elif isinstance(entity, list) and len(entity) == 3:
        kind, start, end = entity
    else:
        raise DataFormatError(f"{where}: {what} must be an object {{type, start, end}} or [type, start, end], got "
                              f"{_kind(entity)} ({entity!r}).")
    return _checked_span(kind, start, end, text, where, what)


def _checked_span(kind, start, end, text: str, where: str, what: str) -> tuple[str, int, int]:
    expect(kind, str, where, f"the type of {what}")
    expect(start, int, where, f"the start of {what}")
    expect(end, int, where, f"the end of {what}")
    if not 0 <= start < end <= len(text):
        raise DataFormatError(f"{where}: {what} {kind} [{start}, {end}) is not a non-empty span of the text "
                              f"(length {len(text)}; ends are exclusive).")
    return kind, start, end


def ner_entities(record: dict, where: str, types: Sequence[str] | None = None) -> list[tuple[str, int, int]] | None:
    """The `(type, start, end_exclusive)` entities of one JSON line, in any of the formats `read_ner` takes; `None`
    when the line has none (a test line)."""
    from rofjax.data.readers.ie import cluener_entities

    text = record["text"]
    if "entities" in record:
        entities = [_offset_entity(e, text, where, i)
                    for i, e in enumerate(expect(record["entities"], list, where, "entities"))]
    elif "label" in record and isinstance(record["label"], dict):
        entities = cluener_entities(record["label"], text, where, None)
    elif "label" in record:                     # doccano: [[start, end, "TYPE"], ...]
        entities = []
        for i, item in enumerate(expect(record["label"], list, where, "label")):
            if not (isinstance(item, list) and len(item) == 3):
                raise DataFormatError(f"{where}: label[{i}] must be [start, end, type] (doccano), got {item!r}.")
            start, end, kind = item
            entities.append(_checked_span(kind, start, end, text, where, f"label[{i}]"))
    else:
        return None
    if types is not None:
        for kind, _, _ in entities:
            if kind not in types:
                raise DataFormatError(f"{where}: entity type {kind!r} is not one of {list(types)}.")
    return sorted(set(entities))


def read_ner(path, types: Sequence[str] | None = None, *, labelled: bool = False) -> Iterator[dict]:
    """Span NER in JSON lines → `{id, text, entities: [(type, start, end_exclusive)]}`. Each line is `{"text": …}`
    with its entities as
      `"entities": [{"type", "start", "end"}, …]` or `[[type, start, end], …]` (end exclusive; doccano's
        `{"label", "start_offset", "end_offset"}` objects too),
      `"label": [[start, end, "TYPE"], …]` (doccano's JSONL export), or
      `"label": {"TYPE": {"mention": [[start, end_inclusive], …]}}` (CLUENER2020).
    `labelled=True` (train and dev files) makes a line without entities an error; elsewhere it is a test line
    (`entities=None`). `types` (when given) lists the allowed entity types."""
    for number, record in json_lines(path):
        where = f"{path}:{number}"
        if "text" not in record:
            raise DataFormatError(f"{where}: missing text.")
        expect(record["text"], str, where, "text")
        entities = ner_entities(record, where, types)
        if entities is None and labelled:
            raise DataFormatError(f"{where}: no entities (an \"entities\" list or a \"label\"); train and dev "
                                  f"lines need them, even if empty.")
        yield {"id": json.dumps(record.get("id", number - 1), ensure_ascii=False), "text": record["text"],
               "entities": entities, "line": number}


def entity_types(path) -> list[str]:
    """The entity types used in a NER JSON-lines file, sorted."""
    path = os.fspath(path)
    return sorted({kind for record in read_ner(path) for kind, _, _ in record["entities"] or []})


def text_documents(path) -> Iterator[dict]:
    """A plain UTF-8 text file as pre-training documents: one `{"text": line}` per non-empty line."""
    for number, line in text_lines(path):
        if line.strip():
            yield {"text": line.strip(), "line": number}
