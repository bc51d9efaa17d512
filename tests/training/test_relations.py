"""GPLinker relations: labels from DuIE records decode back to the gold triples; the config trains."""

import numpy as np

from rofjax.data.synthetic import generate_duie
from rofjax.data.tokenizer import Tokenizer
from rofjax.data.vocab import EMBEDDED_VOCAB
from rofjax.decode.relations import extract_triples
from rofjax.models import get_preset
from rofjax.training.tasks import RelationTask
from rofjax.training.tasks.text_spans import token_boundaries


def _dense(groups, n):
    out = np.full((len(groups), n, n), -5.0)
    for k, pairs in enumerate(groups):
        for a, b in pairs:
            if (a, b) != (0, 0):
                out[k, a, b] = 5.0
    return out


def test_labels_decode_back_to_the_gold_triples():
    tokenizer = Tokenizer(EMBEDDED_VOCAB)
    predicates = ["创始人", "所属球队"]
    task = RelationTask(get_preset("roformer_v2_tiny", vocab_size=tokenizer.vocab_size), tokenizer, predicates,
                        max_length=96)
    for raw in generate_duie(60, seed=2):
        record = {"text": raw["text"], "triples": sorted({(x["subject"], x["predicate"], x["object"])
                                                          for x in raw["spo_list"]})}
        example = task.encode(record)
        ids, offsets, _, _ = token_boundaries(task.tokenizer, record["text"], task.max_length)
        n = len(ids)
        triples = extract_triples(_dense(example["entity_labels"], task.max_length)[:, :n, :n],
                                  _dense(example["head_labels"], task.max_length)[:, :n, :n],
                                  _dense(example["tail_labels"], task.max_length)[:, :n, :n], predicates)
        text = record["text"]
        as_text = {(text[offsets[s[0]][0]:offsets[s[1]][1]], p, text[offsets[o[0]][0]:offsets[o[1]][1]])
                   for s, p, o in triples}
        # The first occurrence of each name is what is labelled (as duie_v1.py does), so compare as text.
        assert as_text == set(record["triples"]), text


def test_duie_config_trains_on_generated_data(tmp_path):
    from configs.ie import duie
    from rofjax.data.synthetic import write_generated_duie
    from rofjax.training.loop import run

    write_generated_duie(tmp_path / "data", train=64, dev=16, seed=0)
    config = duie.get_config()
    config.data_dir = str(tmp_path / "data")
    config.total_steps = 4
    config.batch_size = 8
    config.head_size = 16
    config.progress_bar = False
    result = run(config, str(tmp_path / "run"))
    assert set(result) >= {"f1", "precision", "recall"} and result["examples"] == 16
