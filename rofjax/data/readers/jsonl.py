"""JSON-lines files: the line reader every format here shares, and classification data in JSONL.

`read_classification(path, labels, ...)` reads one example per line, `{"text": …, "pair": …, "label": …}` by
default (the keys are arguments); a label may be the label string or its index in `labels`. Errors name the file
and line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence


class DataFormatError(ValueError):
    """A malformed line of a dataset file; the message starts with `file:line:`."""


# Readers --------------------------------------------------------------------------------------------------------

def json_lines(path) -> Iterator[tuple[int, dict]]:
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


def read_classification(path, labels: Sequence[str], *, text_key: str = "text", pair_key: str | None = None,
                        label_key: str = "label") -> Iterator[dict]:
    """`{id, text, pair, label}` records (`label` the index in `labels`; -1 on a line without one, as in a test
    file; `pair` "" for single sentences)."""
    index = {str(label): i for i, label in enumerate(labels)}
    for number, record in json_lines(path):
        where = f"{path}:{number}"
        text = record.get(text_key)
        if not isinstance(text, str):
            raise DataFormatError(f"{where}: missing text field {text_key!r}.")
        pair = record.get(pair_key, "") if pair_key else ""
        if not isinstance(pair, str):
            raise DataFormatError(f"{where}: field {pair_key!r} is not text.")
        label = -1
        if label_key in record:
            value = record[label_key]
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
                label = value
            elif str(value) in index:
                label = index[str(value)]
            else:
                raise DataFormatError(f"{where}: label {value!r} is not one of {list(labels)}.")
        yield {"id": json.dumps(record.get("id", number - 1), ensure_ascii=False), "text": text, "pair": pair,
               "label": label}
