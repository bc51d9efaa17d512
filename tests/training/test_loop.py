"""End-to-end: the loop trains, resumes bit-exactly, stops on a non-finite loss, starts from pre-training.
(Killed and preempted runs: test_preemption.py, a module of its own so that the two run on different workers.)"""

import json
import os
import re

import jax
import numpy as np
import pytest

from configs import demo
from configs.pretrain import tiny_mlm
from rofjax.checkpoint import restore_params
from rofjax.checkpoint.tree import CheckpointMismatchError
from rofjax.training.loop import NonFiniteLossError, run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _tiny(config, data_dir, **changes):
    config.data_dir = data_dir
    config.model.num_layers = 1
    config.model.hidden_size = 32
    config.model.num_heads = 2
    config.model.intermediate_size = 64
    config.max_length = 32
    config.batch_size = 8
    config.eval_examples = 64
    config.progress_bar = False
    config.log_every = 1
    config.optim.warmup_steps = 2
    for key, value in changes.items():
        target = config
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return config


def _rows(workdir, name="metrics.jsonl"):
    with open(os.path.join(workdir, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_resume_is_bit_exact_and_sees_the_same_batches(tmp_path, data_dir, monkeypatch):
    straight = _tiny(demo.get_config(), data_dir, total_steps=6, save_every=2)
    run(straight, str(tmp_path / "straight"))

    from rofjax.training.state import Trainer

    original, calls = Trainer.train_step, {"n": 0}

    def crash_on_fifth_step(self, state, batch):
        calls["n"] += 1
        if calls["n"] == 5:                       # after the step-4 checkpoint, before step 5 completes
            raise KeyboardInterrupt("simulated crash")
        return original(self, state, batch)

    monkeypatch.setattr(Trainer, "train_step", crash_on_fifth_step)
    with pytest.raises(KeyboardInterrupt):
        run(_tiny(demo.get_config(), data_dir, total_steps=6, save_every=2), str(tmp_path / "resumed"))
    monkeypatch.setattr(Trainer, "train_step", original)
    run(_tiny(demo.get_config(), data_dir, total_steps=6, save_every=2), str(tmp_path / "resumed"))
    a, b = _rows(tmp_path / "straight"), _rows(tmp_path / "resumed")
    assert [r["step"] for r in b] == list(range(1, 7))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    for x, y in zip(_leaves(restore_params(tmp_path / "straight" / "checkpoints")),
                    _leaves(restore_params(tmp_path / "resumed" / "checkpoints"))):
        np.testing.assert_array_equal(x, y)
    assert os.listdir(tmp_path / "straight" / "best") and os.listdir(tmp_path / "straight" / "tensorboard")


# Worker processes start slowly on two cores; tests/data/test_data.py checks their saved position in the default run.
@pytest.mark.slow
def test_batches_made_by_worker_processes_resume_exactly_and_only_with_as_many_workers(tmp_path, data_dir):
    config = lambda total: _tiny(demo.get_config(), data_dir, total_steps=total, save_every=2, **{"data.workers": 2})
    run(config(4), str(tmp_path / "straight"))
    run(config(2), str(tmp_path / "resumed"))
    run(config(4), str(tmp_path / "resumed"))
    a, b = _rows(tmp_path / "straight"), _rows(tmp_path / "resumed")
    assert [r["step"] for r in b] == [1, 2, 3, 4] and [r["loss"] for r in a] == [r["loss"] for r in b]
    for x, y in zip(_leaves(restore_params(tmp_path / "straight" / "checkpoints")),
                    _leaves(restore_params(tmp_path / "resumed" / "checkpoints"))):
        np.testing.assert_array_equal(x, y)
    # Another worker count would read other batches: refused, naming the key, and nothing moved or lost.
    with pytest.raises(CheckpointMismatchError, match=r"config\.data\.workers=2, this run has config\.data\.workers=0"):
        run(_tiny(demo.get_config(), data_dir, total_steps=6, save_every=2), str(tmp_path / "resumed"))
    assert sorted(os.listdir(tmp_path / "resumed" / "checkpoints")) == ["2", "4"]


@pytest.mark.slow      # the next test reaches the same stop, on a step it names exactly
def test_nonfinite_loss_stops_with_the_step(tmp_path, data_dir):
    config = _tiny(demo.get_config(), data_dir, total_steps=20, save_every=100)
    config.optim.lr = 1e30
    config.optim.clip_norm = 0.0
    config.optim.warmup_steps = 0
    with pytest.raises(NonFiniteLossError, match=r"at step \d+"):
        run(config, str(tmp_path / "nan"))


def test_the_first_nonfinite_step_is_named_exactly_and_never_checkpointed(tmp_path, data_dir):
    """Each step's metrics are read after the next step is dispatched: the report must still name the first
    non-finite step, log every step before it, and keep no checkpoint of it or of the step after it."""
    config = _tiny(demo.get_config(), data_dir, total_steps=20, save_every=5)
    config.optim.clip_norm = 0.0
    # The update of step 9 throws the weights away, so the loss of step 10, a save step, is the first non-finite.
    config.optim.piecewise_linear = {0: 1.0, 7: 1.0, 8: 1e30}
    with pytest.raises(NonFiniteLossError, match=r"at step (\d+)") as raised:
        run(config, str(tmp_path / "nan"))
    first_bad = int(re.search(r"at step (\d+)", str(raised.value)).group(1))
    rows = _rows(tmp_path / "nan")
    assert [r["step"] for r in rows] == list(range(1, first_bad)) and first_bad == 10
    assert all(np.isfinite(r["loss"]) for r in rows)
    saved = sorted(int(name) for name in os.listdir(tmp_path / "nan" / "checkpoints") if name.isdigit())
    assert saved and saved[-1] < first_bad
    assert all(np.isfinite(np.asarray(x)).all() for x in _leaves(restore_params(tmp_path / "nan" / "checkpoints")))


def test_pretraining_lowers_the_mlm_loss_and_finetune_starts_from_it(tmp_path, data_dir):
    config = _tiny(tiny_mlm.get_config(), data_dir, total_steps=40, save_every=40, max_length=64,
                   batch_size=16, eval_examples=32)
    config.optim.lr = 5e-3
    config.optim.warmup_steps = 0
    run(config, str(tmp_path / "mlm"))
    losses = [r["loss"] for r in _rows(tmp_path / "mlm")]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5, losses
    # Its data position belongs to the chunking pipeline: resuming with documents cut (how runs began before
    # chunking) is refused, naming the key, and nothing is moved.
    config.data.long_documents = "cut"
    with pytest.raises(CheckpointMismatchError, match=r"holds the data position of another input pipeline .*"
                                                      r"--config.data.long_documents=cut"):
        run(config, str(tmp_path / "mlm"))
    assert sorted(os.listdir(tmp_path / "mlm" / "checkpoints")) == ["40"]
    finetune = _tiny(demo.get_config(), data_dir, total_steps=2, save_every=2,
                     init_checkpoint=str(tmp_path / "mlm" / "checkpoints"))
    run(finetune, str(tmp_path / "ft"))
    pretrained = restore_params(tmp_path / "mlm" / "checkpoints")
    started = restore_params(tmp_path / "ft" / "checkpoints")
    assert started["encoder"]["embeddings"]["word_embeddings"]["embedding"].shape == \
        pretrained["embeddings"]["word_embeddings"]["embedding"].shape


def test_decoding_reads_each_batch_back_after_dispatching_the_next():
    from rofjax.training.tasks.base import fetched_one_behind

    events = []

    def dispatched():
        for k in range(3):
            events.append(f"dispatch {k}")
            yield jax.numpy.full((2,), k), k

    for value, tag in fetched_one_behind(dispatched()):
        events.append(f"read {tag}")
        assert isinstance(value, np.ndarray) and value.tolist() == [tag, tag]
    assert events == ["dispatch 0", "dispatch 1", "read 0", "dispatch 2", "read 1", "read 2"]
    assert list(fetched_one_behind(iter(()))) == []
