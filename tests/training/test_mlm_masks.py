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


def test_a_document_longer_than_a_row_is_cut_with_one_warning_naming_its_line(tokenizer, monkeypatch):
    import warnings

    from rofjax.training.tasks import mlm

    monkeypatch.setattr(mlm, "_warned_cut", False)
    task = MaskedLMTask(get_preset("roformer_v2_tiny"), tokenizer, max_length=16, whole_word=False)
    short = task.encode_document({"text": "今天天气很好", "line": 1})
    assert len(short["input_ids"]) == 8                                       # [CLS] 6 characters [SEP]
    with pytest.warns(UserWarning, match=r"document \(line 2\) has 62 tokens; masked LM trains on its first 16"):
        cut = task.encode_document({"text": "今天天气很好" * 10, "line": 2})
    assert len(cut["input_ids"]) == 16 and cut["input_ids"][-1] == tokenizer.sep_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                        # once per process, not per document
        task.encode_document({"text": "今天天气很好" * 10, "line": 3})
