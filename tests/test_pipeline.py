"""Exported models and raw-text pipelines: a run → `rofjax export` → `rofjax.pipeline` / `rofjax predict`."""

import contextlib
import json
import os
import shutil

import jax
import numpy as np
import pytest

import rofjax
from rofjax.checkpoint.tree import flatten
from rofjax.cli import main
from rofjax.export import ExportError, export, labels_from_json, labels_to_json, load, save_weights

TEXTS = ["李鹏在北京会见了美国客人", "国务院总理在人民大会堂发表讲话", "今天天气很好。" * 30]


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory):
    """The main job, `rofjax demo` (People's Daily NER: train, score against the lexicon baseline, export, run on
    new sentences), from a folder outside the checkout, 2 steps of a tiny model; its output, run folder and model."""
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("ner")
    done = subprocess.run([sys.executable, "-m", "rofjax.cli", "demo", "--workdir", str(folder / "run"),
                           "--config.model.preset=roformer_v2_tiny", "--config.total_steps=2",
                           "--config.batch_size=8", "--config.head_size=16", "--config.eval_examples=16",
                           "--config.progress_bar=False"],
                          cwd=folder, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, folder / "run", str(folder / "run" / "model")


@pytest.fixture(scope="module")
def ner_model(ner_run):
    return ner_run[1:]


def test_main_job_scores_against_its_baseline_and_shows_entities(ner_run):
    import re

    out = ner_run[0]
    scores = re.search(r"dev entity F1 ([0-9.]+) .* on 16 sentences; lexicon baseline .* F1 ([0-9.]+)", out)
    assert scores and all(0.0 <= float(x) <= 1.0 for x in scores.groups()), out
    assert "国务院总理李鹏今天在北京会见了美国国务卿奥尔布赖特。\n  → " in out


def test_lexicon_baseline_matches_training_entities_longest_first():
    from rofjax.decode.spans import lexicon_baseline

    train = [{"text": "北京大学在北京", "entities": [("ORG", 0, 4), ("LOC", 5, 7)]},
             {"text": "北京很大", "entities": [("LOC", 0, 2)]}, {"text": "李", "entities": [("PER", 0, 1)]}]
    found = lexicon_baseline(train, [{"text": "我在北京大学，李四在北京。"}])
    assert found == [[("ORG", 2, 6), ("LOC", 10, 12)]]          # one-character names are not matched


def test_export_writes_a_self_contained_folder(ner_model):
    run_dir, model_dir = ner_model
    assert sorted(os.listdir(model_dir)) == ["README.md", "model.safetensors", "model_config.json", "task.json",
                                             "vocab.txt"]
    meta = json.load(open(os.path.join(model_dir, "task.json"), encoding="utf-8"))
    assert meta["task"] == "ner" and meta["family"] == "ner" and meta["labels"] == ["PER", "LOC", "ORG"]
    assert meta["metrics"]["step"] == 2 and "f1" in meta["metrics"]
    card = open(os.path.join(model_dir, "README.md"), encoding="utf-8").read()
    assert "PER, LOC, ORG" in card and "f1 " in card
    from_run, exported = load(run_dir), load(model_dir)
    want, got = flatten(jax.device_get(from_run.params)), flatten(exported.params)
    assert sorted(want) == sorted(got)
    for name in want:
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(want[name]), err_msg=name)
    assert not any(name.endswith(".tmp") or ".tmp-" in name for name in os.listdir(os.path.dirname(model_dir)))
    modes = {name: os.stat(os.path.join(model_dir, name)).st_mode & 0o777 for name in os.listdir(model_dir)}
    assert len(set(modes.values())) == 1, modes                          # the weights are shared like the rest
    # An exported folder is a checkpoint too (init_checkpoint, convert --from rofjax), shapes checked by name.
    from rofjax.checkpoint import CheckpointMismatchError, restore_params

    restored = flatten(restore_params(model_dir))
    assert sorted(restored) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(np.asarray(restored[name]), np.asarray(want[name]), err_msg=name)
    wrong = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[:-1] + (a.shape[-1] + 1,), a.dtype),
                                   jax.device_get(from_run.params))
    with pytest.raises(CheckpointMismatchError, match=r"model.safetensors: parameter \S+ is stored with shape"):
        restore_params(model_dir, target=wrong)


def test_ner_pipeline_gives_entities_with_text_offsets_and_scores(ner_model):
    run_dir, model_dir = ner_model
    ner = rofjax.pipeline("ner", model_dir)
    results = ner(TEXTS)
    assert results[:1] == rofjax.pipeline("ner", run_dir)(TEXTS[:1])  # the run folder reads the same
    assert ner(TEXTS[0]) == results[0]
    for text, entities in zip(TEXTS, results):
        for entity in entities:
            assert set(entity) == {"type", "text", "start", "end", "score"}
            assert entity["type"] in ("PER", "LOC", "ORG") and entity["text"] == text[entity["start"]:entity["end"]]
            assert entity["score"] > 0
    # Length buckets decode what one max_length batch decodes (the task's own decoder), scores included.
    loaded = load(model_dir)
    task, params = loaded.task, loaded.params
    expected = task.decode(params, [{"text": t} for t in TEXTS[:2]], batch_size=4)
    assert [[(e["type"], e["start"], e["end"]) for e in r] for r in results[:2]] == \
        [sorted(s, key=lambda x: (x[1], x[2], x[0])) for s in expected]
    ids, _, offsets = task.tokenizer.encode(TEXTS[0], maxlen=task.max_length)
    logits = np.asarray(task.predict(params, {"input_ids": np.asarray([ids + [0] * (task.max_length - len(ids))])}))
    if results[0]:
        first = results[0][0]
        h = next(i for i, o in enumerate(offsets) if o[0] == first["start"] and o[1] > o[0])
        t = next(i for i, o in enumerate(offsets) if o[1] == first["end"] and o[1] > o[0])
        assert first["score"] == pytest.approx(float(logits[0, task.types.index(first["type"]), h, t]), abs=1e-3)


def test_pipeline_refuses_what_it_cannot_do(ner_model, tmp_path):
    _, model_dir = ner_model
    with pytest.raises(ValueError, match="is a 'ner' model"):
        rofjax.pipeline("classification", model_dir)
    with pytest.raises(ValueError, match="pipeline task 'summarise'"):
        rofjax.pipeline("summarise", model_dir)
    with pytest.raises(ExportError, match="no such model folder"):
        rofjax.pipeline("ner", str(tmp_path / "nothing/here"))
    ner = rofjax.pipeline("ner", model_dir)
    with pytest.raises(TypeError, match="input 1: expected a string; got int"):
        ner(["fine", 3])
    for wrong, name in (({"text": "李鹏"}, "dict"), (123, "int"), (None, "NoneType"), (b"abc", "bytes")):
        with pytest.raises(TypeError, match=f"pipeline input: expected a string or a list of strings; got {name}"):
            ner(wrong)
    assert len(ner(("李鹏在北京", "美国"))) == 2                 # a tuple of texts is a sequence of texts for NER


def test_a_hub_id_is_fetched_through_huggingface_hub_and_its_cache(ner_model, tmp_path, monkeypatch):
    """No network here: huggingface_hub runs offline on a cache laid out as a download leaves it (refs/main →
    snapshots/<commit>/), which is where `snapshot_download` finds a model it fetched before."""
    import shutil

    pytest.importorskip("huggingface_hub")
    _, model_dir = ner_model
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--ner-tiny"
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    from_hub = rofjax.pipeline("ner", "someone/ner-tiny")
    assert from_hub(TEXTS[:2]) == rofjax.pipeline("ner", model_dir)(TEXTS[:2])
    with pytest.raises(ExportError, match="someone/absent: not a local folder, and the Hugging Face hub could not"):
        rofjax.pipeline("ner", "someone/absent")


def test_damaged_exports_are_reported_by_file_and_tensor(ner_model, tmp_path):
    import shutil

    _, model_dir = ner_model
    with pytest.raises(FileExistsError):
        export(os.path.dirname(model_dir) + "/run", model_dir)
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ExportError, match="model.safetensors: not a readable safetensors file"):
        load(broken)
    params = load(model_dir).params
    name = sorted(flatten(params))[0]
    flat = flatten(params)
    flat[name] = np.zeros((3, 3), np.float32)
    from rofjax.checkpoint.tree import unflatten

    save_weights(str(broken / "model.safetensors"), unflatten(flat))
    with pytest.raises(ExportError, match=f"tensor {name} has shape \\(3, 3\\)"):
        load(broken)
    meta = json.loads((broken / "task.json").read_text(encoding="utf-8"))
    (broken / "task.json").write_text(json.dumps({**meta, "format": 99}), encoding="utf-8")
    with pytest.raises(ExportError, match="format 99 is newer"):
        load(broken)
    (broken / "vocab.txt").unlink()
    (broken / "task.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ExportError, match="vocab.txt is missing"):
        load(broken)


def test_predict_command_reads_lines_and_json_lines(ner_model, tmp_path, capsys):
    _, model_dir = ner_model
    source = tmp_path / "in.txt"
    source.write_text(f"{TEXTS[0]}\n\n" + json.dumps({"text": TEXTS[1]}, ensure_ascii=False) + "\n",
                      encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["predict", "--model", str(model_dir), "--task", "ner", "--input", str(source),
                 "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == TEXTS[:2]
    assert [r["result"] for r in rows] == rofjax.pipeline("ner", model_dir)(TEXTS[:2])
    source.write_text(f"{TEXTS[0]}\n{{\"txt\": 1}}\n", encoding="utf-8")
    assert main(["predict", "--model", str(model_dir), "--task", "ner", "--input", str(source),
                 "--output", str(tmp_path / "bad.jsonl")]) == 2
    assert "line 2: a JSON line needs a string 'text'" in capsys.readouterr().err
    assert not (tmp_path / "bad.jsonl").exists() and not list(tmp_path.glob("bad.jsonl.tmp-*"))
    source.write_bytes(f"{TEXTS[0]}\r\n".encode() + b"\xff\xfe bad\n")
    assert main(["predict", "--model", str(model_dir), "--task", "ner", "--input", str(source)]) == 2
    assert "line 2: not UTF-8 (invalid start byte at byte 0 of the line)" in capsys.readouterr().err
    # Paths that cannot work are refused before the model loads, naming the flag.
    for flags, message in [(["--input", str(tmp_path)], f"--input {tmp_path} is a folder"),
                           (["--output", str(tmp_path)], f"--output {tmp_path} is a folder"),
                           (["--output", str(tmp_path / "no" / "out.jsonl")], "its folder"),
                           (["--input", str(tmp_path / "missing.txt")], "missing.txt does not exist"),
                           (["--batch-size", "0"], "argument --batch-size: 0 is not ≥ 1"),
                           (["--batch-size", "abc"], "argument --batch-size: 'abc' is not a whole number")]:
        with pytest.raises(SystemExit) if flags[0] == "--batch-size" else contextlib.nullcontext():
            assert main(["predict", "--model", str(model_dir), "--task", "ner", *flags]) == 2
        assert message in capsys.readouterr().err


def test_export_command(ner_model, tmp_path, capsys):
    run_dir, _ = ner_model
    assert main(["export", str(run_dir), str(tmp_path / "m")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "m")
    assert main(["export", str(run_dir), str(tmp_path / "m")]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["export", str(tmp_path), str(tmp_path / "m2")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    # --overwrite replaces an earlier export, and nothing else a path may name.
    assert main(["export", str(run_dir), str(tmp_path / "m"), "--overwrite"]) == 0
    (tmp_path / "a_file").write_text("keep", encoding="utf-8")
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_folder" / "notes.txt").write_text("keep", encoding="utf-8")
    for target, message in [("a_file", "is a file, not a model folder"), ("a_folder", "not an exported model")]:
        assert main(["export", str(run_dir), str(tmp_path / target), "--overwrite"]) == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "a_file").read_text(encoding="utf-8") == "keep"
    assert (tmp_path / "a_folder" / "notes.txt").read_text(encoding="utf-8") == "keep"
    # A run folder that lost its vocabulary is named, not exported with whatever config.data.vocab_path now holds.
    damaged = shutil.copytree(run_dir, tmp_path / "damaged_run")
    os.remove(damaged / "vocab.txt")
    assert main(["export", str(damaged), str(tmp_path / "m3")]) == 2
    assert f"{damaged / 'vocab.txt'} is missing from the run folder" in capsys.readouterr().err


def test_classification_pipeline_probabilities(tmp_path):
    from configs.clue import tnews
    from rofjax.export import LoadedModel, _build
    from rofjax.models import get_preset
    from rofjax.pipelines import pipeline

    config = tnews.get_config()
    labels = ["news_story", "news_culture", "news_sports"]
    vocab = os.path.join(os.path.dirname(rofjax.__file__), "data", "vocab", "snownlp_char.txt")
    from rofjax.data.tokenizer import Tokenizer

    model_config = get_preset("roformer_v2_tiny", vocab_size=Tokenizer(vocab).vocab_size)
    task = _build(config.to_dict(), "classification", {}, labels, vocab, model_config)
    params = task.init_params(jax.random.key(0), task.init_batch(1))
    classify = pipeline("classification", LoadedModel(task, params, {"family": "classification",
                                                                     "labels": labels}), batch_size=4)
    results = classify(["体育新闻", "文化", "故事一则", "another", "第五条"])
    assert len(results) == 5
    batch = {k: np.stack([task._inputs({task.text_key: "体育新闻"})[k]]) for k in ("input_ids", "segment_ids")}
    logits = np.asarray(task._logits(params, batch), np.float64)[0]
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert results[0]["label"] == labels[int(np.argmax(expected))]
    np.testing.assert_allclose([results[0]["scores"][n] for n in labels], expected, atol=1e-4)
    # tnews has no text pair: a pair would be dropped without a word, so it is refused.
    with pytest.raises(ValueError, match=r"input 1 is a \(text, pair\) tuple, but .* classifies single texts"):
        classify(["体育新闻", ("文化", "新闻")])


def test_label_sets_round_trip_through_json():
    from rofjax.data.readers.ie import EventSchema

    schema = EventSchema({"裁员": ["时间", "裁员人数"]}, {("质押", "股份"): ("质押", "质押物")})
    back = labels_from_json(json.loads(json.dumps(labels_to_json(schema), ensure_ascii=False)))
    assert back == schema and back.labels == schema.labels
    assert labels_from_json(labels_to_json([("a", "b"), ("c", "d")])) == [("a", "b"), ("c", "d")]
    assert labels_from_json(labels_to_json(["PER", "LOC"])) == ["PER", "LOC"]
