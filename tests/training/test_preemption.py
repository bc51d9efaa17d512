"""Runs killed (SIGKILL) or preempted (SIGTERM) at any moment, and bad overrides, through the real program."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _rows(workdir, name="metrics.jsonl"):
    with open(os.path.join(workdir, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_sigkill_at_any_moment_then_rerun_resumes(tmp_path, data_dir):
    workdir = tmp_path / "killed"
    command = [sys.executable, "-m", "train.finetune", "--config", "configs/demo.py", f"--workdir={workdir}",
               f"--config.data_dir={data_dir}", "--config.total_steps=40", "--config.save_every=5",
               "--config.model.num_layers=1", "--config.model.hidden_size=32", "--config.model.num_heads=2",
               "--config.model.intermediate_size=64", "--config.max_length=32", "--config.batch_size=8",
               "--config.eval_examples=64", "--config.progress_bar=False", "--config.eval_every=0"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        rows = _rows(workdir) if (workdir / "metrics.jsonl").exists() else []
        if len(rows) >= 12:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    assert "resumed from" in finished.stdout
    steps = [r["step"] for r in _rows(workdir)]
    assert steps == list(range(1, 41))


def test_sigterm_saves_and_exits_cleanly(tmp_path, data_dir):
    workdir = tmp_path / "preempted"
    command = [sys.executable, "-m", "train.finetune", "--config", "configs/demo.py", f"--workdir={workdir}",
               f"--config.data_dir={data_dir}", "--config.total_steps=100000", "--config.save_every=100000",
               "--config.model.num_layers=1", "--config.model.hidden_size=32", "--config.model.num_heads=2",
               "--config.model.intermediate_size=64", "--config.max_length=32", "--config.batch_size=8",
               "--config.progress_bar=False"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    while not (workdir / "metrics.jsonl").exists() or len(_rows(workdir)) < 3:
        time.sleep(0.05)
        assert process.poll() is None, process.stdout.read().decode()[-2000:]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    saved = [int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit()]
    assert saved and max(saved) >= 3


def test_misspelt_override_names_the_key(tmp_path):
    out = subprocess.run([sys.executable, "-m", "train.finetune", "--config", "configs/demo.py",
                          f"--workdir={tmp_path}", "--config.optim.lrr=1"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0 and "lrr" in out.stderr
