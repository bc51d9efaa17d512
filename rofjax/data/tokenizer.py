"""BERT WordPiece tokenisation with character offsets, on Hugging Face `tokenizers`.

Behaviour follows bert4keras's `Tokenizer` as the Chinese checkpoints expect it: lower-casing with accents
stripped, every CJK character its own token, `[CLS] … [SEP]` (pairs `[CLS] a [SEP] b [SEP]`), truncation that
always keeps the final `[SEP]`, id 0 = `[PAD]`. Offsets are `(start, end)` character spans of the original
text for every token (`(0, 0)` for special tokens) — the equivalent of bert4keras `rematch`.

`word_level=True` is RoFormer v1's word mode (`chinese_roformer_L-12_H-768_A-12`, vocabulary of 50k words and
characters): the normalised text is cut by jieba with HMM off; a word in the vocabulary is one token, any other
word is tokenised as characters/WordPiece — bert4keras `Tokenizer(pre_tokenize=lambda s: jieba.cut(s, HMM=False))`.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def read_vocab(path: str | os.PathLike) -> dict[str, int]:
    """`{token: id}` from a vocab.txt, one token per line (id = line number - 1). The file is UTF-8; a BOM, as
    Windows editors save it, is not part of the first token (else `[PAD]` would be missing), and a byte that is
    not UTF-8 is reported with its line."""
    from rofjax.data.readers.jsonl import text_lines

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Vocabulary file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"Vocabulary {path} is a folder; give its vocab.txt file"
                                + (f" ({os.path.join(path, 'vocab.txt')})." if os.path.exists(
                                    os.path.join(path, "vocab.txt")) else "."))
    vocab = {}
    for number, token in text_lines(path):
        if token in vocab:
            raise ValueError(f"{path}:{number}: token {token!r} repeats line {vocab[token] + 1}.")
        vocab[token] = number - 1
    return vocab


class Tokenizer:
    """`Tokenizer(vocab_path)`; `encode(text, pair=None, maxlen=None)` → ids, segment ids, offsets."""

    def __init__(self, vocab_path: str | os.PathLike, *, lowercase: bool = True, pair_segment_ids: bool = True,
                 word_level: bool = False):
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import models, normalizers, pre_tokenizers, processors

        vocab_path = os.fspath(vocab_path)
        vocab = read_vocab(vocab_path)
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"{vocab_path}: the vocabulary lacks special token(s) {missing}.")
        if vocab["[PAD]"] != 0:
            raise ValueError(f"{vocab_path}: [PAD] must be id 0 (line 1); it is on line {vocab['[PAD]'] + 1}.")
        self.vocab_path = vocab_path
        self.vocab = vocab
        self.inverse = {i: t for t, i in vocab.items()}
        tokenizer = HFTokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
        # Word mode must see CJK runs whole (jieba cuts them), so the spaces BERT puts around CJK characters wait
        # for the pre-tokenizer, which isolates the characters of words the vocabulary lacks.
        tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=not word_level,
                                                          strip_accents=lowercase, lowercase=lowercase)
        self.word_level = word_level
        if word_level:
            tokenizer.pre_tokenizer = pre_tokenizers.PreTokenizer.custom(_JiebaWords(vocab))
        else:
            tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
        second = 1 if pair_segment_ids else 0
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0", pair=f"[CLS]:0 $A:0 [SEP]:0 $B:{second} [SEP]:{second}",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
        self._tokenizer = tokenizer
        self.pad_id, self.unk_id, self.cls_id, self.sep_id = vocab["[PAD]"], vocab["[UNK]"], cls_id, sep_id
        self.mask_id = vocab["[MASK]"]

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def chinese_word_entries(self) -> int:
        """How many vocabulary entries are Chinese words of several characters (RoFormer v1's word vocabulary has
        tens of thousands; a character vocabulary has none that character tokenisation could ever produce)."""
        return sum(1 for token in self.vocab if len(token) > 1 and all("\u4e00" <= c <= "\u9fff" for c in token))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, pair: str | None = None, maxlen: int | None = None):
        """`(ids, segment_ids, offsets)` as lists; with `maxlen`, longest-first truncation keeps `[SEP]`."""
        if maxlen is not None:
            if maxlen < (5 if pair is not None else 3):
                raise ValueError(f"maxlen={maxlen} leaves no room for text between the special tokens.")
            self._tokenizer.enable_truncation(maxlen, strategy="longest_first")
        else:
            self._tokenizer.no_truncation()
        encoding = self._tokenizer.encode(text, pair)
        return list(encoding.ids), list(encoding.type_ids), [tuple(o) for o in encoding.offsets]

    def encode_batch(self, texts: Sequence[str], pairs: Sequence[str] | None = None, maxlen: int | None = None):
        if maxlen is not None:
            self._tokenizer.enable_truncation(maxlen, strategy="longest_first")
        else:
            self._tokenizer.no_truncation()
        inputs = list(texts) if pairs is None else list(zip(texts, pairs))
        return [(list(e.ids), list(e.type_ids)) for e in self._tokenizer.encode_batch(inputs)]

    def encode_plain(self, text: str):
        """Token ids and character offsets of `text` alone: no [CLS]/[SEP], no truncation."""
        self._tokenizer.no_truncation()
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        return list(encoding.ids), [tuple(o) for o in encoding.offsets]

    def encode_pieces(self, pieces: Sequence[str], maxlen: int | None = None):
        """`[CLS] p1 [SEP] p2 [SEP] … [SEP]` ids (segment ids all 0, as the CLUE recipes feed them); with `maxlen`
        the longest piece loses its last token until the whole fits (bert4keras `truncate_sequences`)."""
        return self.join_pieces([self.encode_plain(p)[0] for p in pieces], maxlen)

    def join_pieces(self, encoded: Sequence[Sequence[int]], maxlen: int | None = None):
        """`encode_pieces` for pieces already tokenised (left unchanged)."""
        encoded = [list(piece) for piece in encoded]
        if maxlen is not None:
            if maxlen < 2 * len(encoded) + 1:
                raise ValueError(f"maxlen={maxlen} leaves no room for {len(encoded)} pieces and their special tokens.")
            budget = maxlen - len(encoded) - 1
            while sum(map(len, encoded)) > budget:
                longest = max(range(len(encoded)), key=lambda i: len(encoded[i]))
                encoded[longest].pop()
        ids = [self.cls_id]
        for piece in encoded:
            ids += piece + [self.sep_id]
        return ids

    def tokenize(self, text: str) -> list[str]:
        return self._tokenizer.encode(text).tokens

    def decode(self, ids) -> str:
        return self._tokenizer.decode([int(i) for i in ids])

    def word_starts(self, words: Sequence[str], maxlen: int | None = None):
        """Encode pre-segmented `words`; returns ids and a bool per token: does it start a word? (whole-word
        masking uses it to pick all of a word's tokens together)."""
        encoding = self._tokenizer.encode(list(words), is_pretokenized=True)
        ids, word_ids = list(encoding.ids), encoding.word_ids
        starts = [w is not None and (i == 0 or word_ids[i - 1] != w) for i, w in enumerate(word_ids)]
        if maxlen is not None and len(ids) > maxlen:
            ids, starts = self.cut(ids, starts, maxlen)
        return ids, starts

    def cut(self, ids: list[int], starts: list[bool], maxlen: int) -> tuple[list[int], list[bool]]:
        """`[CLS] …` ids and their word-start flags cut to `maxlen`, the last kept token replaced by `[SEP]`."""
        return ids[: maxlen - 1] + [self.sep_id], starts[: maxlen - 1] + [False]


def pad_batch(sequences: Sequence[Sequence[int]], length: int, value: int = 0) -> np.ndarray:
    """bert4keras `sequence_padding` to a fixed length (truncating longer ones)."""
    out = np.full((len(sequences), length), value, dtype=np.int32)
    for row, seq in enumerate(sequences):
        seq = list(seq)[:length]
        out[row, : len(seq)] = seq
    return out


_SPLIT_ALONE = re.compile(r"\s+|[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff\U00020000-\U0002fa1f]")


def _is_punctuation(char: str) -> bool:
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


class _JiebaWords:
    """A `tokenizers` pre-tokenizer: jieba words (HMM off) kept whole when the vocabulary has them; other words
    split as BERT's basic tokenizer splits (whitespace dropped, CJK characters and punctuation alone)."""

    def __init__(self, vocab):
        import jieba

        self._vocab = vocab
        self._cut = lambda text: jieba.cut(text, HMM=False)

    def _split(self, index, normalized):
        text = str(normalized)
        pieces, position = [], 0
        for word in self._cut(text):
            start, position = position, position + len(word)
            if word in self._vocab:
                pieces.append(normalized[start:position])
                continue
            run = None
            for offset, char in enumerate(word, start=start):
                alone = _SPLIT_ALONE.match(char) is not None or _is_punctuation(char)
                if run is not None and (alone or char.isspace()):
                    pieces.append(normalized[run:offset])
                    run = None
                if char.isspace():
                    continue
                if alone:
                    pieces.append(normalized[offset:offset + 1])
                elif run is None:
                    run = offset
            if run is not None:
                pieces.append(normalized[run:position])
        return pieces

    def pre_tokenize(self, pretokenized):
        pretokenized.split(self._split)
