"""GPLinker event task: labels built from DuEE records decode back to the same events; a tiny run works."""

import numpy as np
import pytest

from rofjax.data.readers.ie import duee_labels, read_duee
from rofjax.data.synthetic import GENERATED_SCHEMA, generate_duee
from rofjax.data.tokenizer import Tokenizer
from rofjax.data.vocab import EMBEDDED_VOCAB
from rofjax.decode.events import events_to_text, extract_events
from rofjax.models import get_preset
from rofjax.training.tasks import EventTask
from rofjax.training.tasks.text_spans import token_boundaries


def _records(tmp_path, count=40):
    import json

    path = tmp_path / "duee.json"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in generate_duee(count, seed=5)),
                    encoding="utf-8")
    return list(read_duee(path, GENERATED_SCHEMA))


def _dense(pairs, heads, n):
    out = np.full((heads, n, n), -5.0)
    for head, rows in enumerate(pairs):
        for h, t in rows:
            if (h, t) != (0, 0):
                out[head, h, t] = 5.0
    return out


def test_labels_decode_back_to_the_gold_events(tmp_path):
    tokenizer = Tokenizer(EMBEDDED_VOCAB)
    labels = duee_labels(GENERATED_SCHEMA)
    task = EventTask(get_preset("roformer_v2_tiny", vocab_size=tokenizer.vocab_size), tokenizer, labels,
                     max_length=96, max_spans_per_class=8, max_links=64)
    for record in _records(tmp_path):
        example = task.encode(record)
        ids, offsets, _, _ = token_boundaries(task.tokenizer, record["text"], task.max_length)
        n = len(ids)
        spans = _dense(example["span_labels"], len(labels), task.max_length)[:, :n, :n]
        heads = _dense(example["head_labels"], 1, task.max_length)[0, :n, :n]
        tails = _dense(example["tail_labels"], 1, task.max_length)[0, :n, :n]
        decoded = events_to_text(extract_events(spans, heads, tails, labels), offsets, record["text"])
        assert sorted(decoded) == sorted(record["events"]), record["text"]


def test_event_task_trains_and_evaluates(tmp_path):
    import jax

    from rofjax.parallel.mesh import create_mesh
    from rofjax.training.optim import build_optimizer
    from rofjax.training.state import Trainer

    tokenizer = Tokenizer(EMBEDDED_VOCAB)
    task = EventTask(get_preset("roformer_v2_tiny", vocab_size=tokenizer.vocab_size), tokenizer,
                     duee_labels(GENERATED_SCHEMA), max_length=64, head_size=16)
    records = _records(tmp_path, 16)
    rows = [task.encode(r) for r in records[:8]]
    batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    optim = {"name": "adamw", "lr": 3e-3, "decay": "constant", "weight_decay": 0.0}
    trainer = Trainer(task, build_optimizer(optim, 10), create_mesh(1, 1, 1, devices=jax.devices()[:1]))
    state = trainer.init_state(0, 8)
    losses = []
    for _ in range(10):
        state, metrics = trainer.train_step(state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0]
    scores = task.evaluate(state.params, records, batch_size=8)
    assert set(scores) >= {"event_f1", "argument_f1"} and scores["examples"] == 16


@pytest.mark.slow
def test_learnability_on_generated_duee(tmp_path):
    """A tiny GPLinker learns the generated DuEE data: ≥ 0.9 event-level F1 on the held-out generated split."""
    from configs.ie import duee
    from rofjax.training.loop import run

    config = duee.get_config()
    config.total_steps = 600
    config.progress_bar = False
    result = run(config, str(tmp_path / "duee"))
    assert result["event_f1"] >= 0.9, result


def test_duee_fin_enumerated_roles_round_trip_to_a_submission(tmp_path):
    import json

    from configs.ie import duee_fin
    from rofjax.data.datasets import get_dataset
    from rofjax.training.tasks import build_task

    (tmp_path / "duee_fin_event_schema.json").write_text(json.dumps({"event_type": "公司上市", "role_list": [
        {"role": "上市公司"}, {"role": "环节", "enum_items": ["筹备上市", "正式上市"]}]}, ensure_ascii=False) + "\n",
        encoding="utf-8")
    line = {"id": "d1", "title": "公告", "text": "甲公司今日在科创板上市。", "event_list": [
        {"event_type": "公司上市", "trigger": "上市", "arguments": [{"role": "上市公司", "argument": "甲公司"},
                                                                  {"role": "环节", "argument": "正式上市"}]}]}
    for split in ("train", "dev"):
        (tmp_path / f"duee_fin_{split}.json").write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    config = duee_fin.get_config()
    config.data_dir = str(tmp_path)
    build_task(config)                                # the enumerated roles become labels of the task
    spec = get_dataset("duee_fin")
    dev = spec.split("validation", str(tmp_path))
    out = tmp_path / "predict.json"
    spec.write_predictions(str(out), [dev[0]], [dev[0]["events"]], spec.labels(str(tmp_path)))
    submission = json.loads(out.read_text(encoding="utf-8"))
    assert submission["event_list"] == [{"event_type": "公司上市", "arguments": [
        {"role": "上市公司", "argument": "甲公司"}, {"role": "环节", "argument": "正式上市"}]}]
