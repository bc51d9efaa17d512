"""Readers of the published file formats: CLUE (`clue`), DuEE / DuEE-fin / DuIE / CLUENER (`ie`) and JSON lines
(`jsonl`). Each yields plain records and fails naming the file and line."""
