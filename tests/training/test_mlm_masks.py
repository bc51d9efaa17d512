"""Masked-LM attention masks: one document per row travels as a key mask, packed rows as document ids."""

import jax
import numpy as np
import pytest
from flax import linen as nn

from rofjax.data.tokenizer import Tokenizer
from rofjax.data.vocab import EMBEDDED_VOCAB
from rofjax.models import get_preset
from rofjax.training.tasks.mlm import MaskedLMTask


def _batch(task, rng, lengths):
    batch = task.init_batch(len(lengths))
    L = task.max_length
    batch["input_ids"] = rng.integers(5, 1000, size=(len(lengths), L)).astype(np.int32)
    batch["doc_ids"] = (np.arange(L)[None, :] < np.asarray(lengths)[:, None]).astype(np.int32)
    batch["input_ids"] *= batch["doc_ids"]
    batch["masked_positions"][:] = np.arange(task.max_predictions)
    batch["masked_labels"][:] = 7
    batch["masked_weights"][:] = 1.0
    return batch


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(EMBEDDED_VOCAB)


def test_one_document_per_row_gives_the_packed_path_loss(tokenizer, rng):
    config = get_preset("roformer_v2_tiny", vocab_size=1000)
    unpacked = MaskedLMTask(config, tokenizer, max_length=32, max_predictions=4, max_documents=1)
    packed = MaskedLMTask(config, tokenizer, max_length=32, max_predictions=4, max_documents=4)
    batch = _batch(unpacked, rng, [32, 20])
    params = nn.unbox(unpacked.init_params(jax.random.key(0), batch))
    loss_unpacked, _ = unpacked.loss(params, batch, jax.random.key(1), 0)
    loss_packed, _ = packed.loss(params, batch, jax.random.key(1), 0)
    np.testing.assert_allclose(float(loss_unpacked), float(loss_packed), rtol=1e-6)


def test_chunked_gau_trains_on_unpacked_rows_and_names_the_fix_for_packed_ones(tokenizer, rng):
    config = get_preset("gau_alpha_tiny", vocab_size=1000, gau_chunk_size=8)
    unpacked = MaskedLMTask(config, tokenizer, max_length=32, max_predictions=4, max_documents=1)
    batch = _batch(unpacked, rng, [32, 20])
    params = nn.unbox(unpacked.init_params(jax.random.key(0), batch))
    loss, _ = unpacked.loss(params, batch, jax.random.key(1), 0)
    assert np.isfinite(float(loss))
    packed = MaskedLMTask(config, tokenizer, max_length=32, max_predictions=4, max_documents=4)
    with pytest.raises(ValueError, match=r"config.data.pack=False"):
        packed.loss(params, batch, jax.random.key(1), 0)


def test_with_long_documents_cut_a_document_longer_than_a_row_is_cut_with_one_warning_naming_its_line(
        tokenizer, monkeypatch):
    import warnings

    from rofjax.training.tasks import mlm

    monkeypatch.setattr(mlm, "_warned_cut", False)
    task = MaskedLMTask(get_preset("roformer_v2_tiny"), tokenizer, max_length=16, whole_word=False,
                        long_documents="cut")
    short = task.encode_document({"text": "今天天气很好", "line": 1})
    assert len(short["input_ids"]) == 8                                       # [CLS] 6 characters [SEP]
    with pytest.warns(UserWarning, match=r"document \(line 2\) has 62 tokens; masked LM trains on its first 16"):
        cut = task.encode_document({"text": "今天天气很好" * 10, "line": 2})
    assert len(cut["input_ids"]) == 16 and cut["input_ids"][-1] == tokenizer.sep_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                        # once per process, not per document
        task.encode_document({"text": "今天天气很好" * 10, "line": 3})
    assert [len(row["input_ids"]) for row in task.document_rows({"text": "今天天气很好" * 10})] == [16]


def _chunked(tokenizer, text, max_length, whole_word=True):
    task = MaskedLMTask(get_preset("roformer_v2_tiny"), tokenizer, max_length=max_length, whole_word=whole_word)
    whole = task.document_rows({"text": text[:3]})[0]                       # a short document: one row, as it is
    ids, starts = task._tokens({"text": text})
    return task, task.document_rows({"text": text}), ids, starts, whole


def test_a_long_document_is_trained_on_whole_in_rows_that_end_at_sentences_or_words(tokenizer):
    import warnings

    sentences = ["今天天气很好，我们去公园散步。", "公园里有很多人在跳舞！", "晚上回家吃饭了吗？"] * 4
    text = "".join(sentences)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                      # chunking is not a cut: no warning
        task, rows, ids, starts, short = _chunked(tokenizer, text, 24)
    assert len(short["input_ids"]) == 5 and short["input_ids"][0] == tokenizer.cls_id
    assert len(rows) > 1 and all(len(row["input_ids"]) <= 24 for row in rows)
    assert all(row["input_ids"][0] == tokenizer.cls_id and row["input_ids"][-1] == tokenizer.sep_id for row in rows)
    bodies = [list(row["input_ids"][1:-1]) for row in rows]
    assert sum(bodies, []) == ids[1:-1]                                     # every token, once, in order
    assert sum([list(row["word_starts"][1:-1]) for row in rows], []) == [int(s) for s in starts[1:-1]]
    ends = {tokenizer.vocab[mark] for mark in "。！？"}
    # Each row but the last ends at a sentence end: here each row's second half holds one.
    assert all(body[-1] in ends for body in bodies[:-1]), [tokenizer.decode(b) for b in bodies]


def test_without_a_sentence_end_a_row_ends_before_a_word_and_a_word_longer_than_a_row_is_split(tokenizer):
    task = MaskedLMTask(get_preset("roformer_v2_tiny"), tokenizer, max_length=7)
    # Words of 2, 3 and 2 tokens (whole-word flags on their first), then one word of 8 tokens.
    ids = [tokenizer.cls_id, *range(10, 17), *range(20, 28), tokenizer.sep_id]
    starts = [False, True, False, True, False, False, True, False, True, *[False] * 7, False]
    task._tokens = lambda record: (ids, starts)
    rows = task.document_rows({"text": "unused"})
    bodies = [list(row["input_ids"][1:-1]) for row in rows]
    # A row holds 5 tokens: the first ends before the word starting at token 6, the second at the long word;
    # the long word itself is cut every 5 tokens.
    assert bodies == [[10, 11, 12, 13, 14], [15, 16], [20, 21, 22, 23, 24], [25, 26, 27]]
    assert [list(row["word_starts"][1:-1]) for row in rows] == [[1, 0, 1, 0, 0], [1, 0], [1, 0, 0, 0, 0], [0, 0, 0]]


def test_training_rows_of_a_long_document_cover_it_and_resume_mid_document(tokenizer):
    import warnings

    import grain

    task = MaskedLMTask(get_preset("roformer_v2_tiny"), tokenizer, max_length=16, whole_word=False, pack=False,
                        max_documents=1)
    records = grain.MapDataset.source([{"text": "今天天气很好。" * 6}, {"text": "短句"}])
    examples = task.training_examples(records, batch_size=2, seed=0)
    rows = list(examples)
    expected = task.document_rows({"text": "今天天气很好。" * 6})
    assert len(rows) == len(expected) + 1 > 3
    iterator = iter(examples)
    next(iterator)
    state = iterator.get_state()
    after = [row["doc_ids"].sum() for row in iterator]
    again = iter(examples)
    again.set_state(state)
    assert [row["doc_ids"].sum() for row in again] == after
    cut = MaskedLMTask(get_preset("roformer_v2_tiny"), tokenizer, max_length=16, whole_word=False, pack=False,
                       max_documents=1, long_documents="cut")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                                     # the cut's notice (tested above)
        assert len(list(cut.training_examples(records, batch_size=2, seed=0))) == 2
    with pytest.raises(ValueError, match=r"config.data.long_documents='split'; expected one of \('chunk', 'cut'\)"):
        MaskedLMTask(get_preset("roformer_v2_tiny"), tokenizer, long_documents="split")
