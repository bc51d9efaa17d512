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
                        label_key: str = "label", labelled: bool = False) -> Iterator[dict]:
    """`{id, text, pair, label}` records (`label` the index in `labels`; -1 on a line without one, as in a test
    file; `pair` "" for single sentences). `labelled=True` (train and dev files) makes a missing label an error."""
    index = {str(label): i for i, label in enumerate(labels)}
    for number, record in json_lines(path):
        where = f"{path}:{number}"
        if text_key not in record:
            raise DataFormatError(f"{where}: missing text field {text_key!r}.")
        text = expect(record[text_key], str, where, f"field {text_key!r}")
        pair = expect(record.get(pair_key, ""), str, where, f"field {pair_key!r}") if pair_key else ""
        label = -1
        if labelled and label_key not in record:
            raise DataFormatError(f"{where}: no {label_key!r} field; train and dev lines need a label.")
        if label_key in record:
            value = record[label_key]
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
                label = value
            elif isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) in index:
                label = index[str(value)]
            else:
                raise DataFormatError(f"{where}: label {value!r} is not one of {list(labels)}.")
        yield {"id": json.dumps(record.get("id", number - 1), ensure_ascii=False), "text": text, "pair": pair,
               "label": label}
