"""Ladder Side-Tuning runs from configs: the backbone comes from its checkpoint unchanged, only the side network and
the head are trained, optimised and stored, and a run refuses a backbone other than the one it was built on."""

import hashlib
import os

import jax
import numpy as np
import pytest
from flax import linen as nn

from configs.demo import get_config
from rofjax.checkpoint import restore_params, save_params
from rofjax.checkpoint.run import RunFolder
from rofjax.checkpoint.tree import CheckpointMismatchError
from rofjax.models import get_preset
from rofjax.models.encoder import Encoder
from rofjax.models.ladder import fingerprint, split_backbone
from rofjax.training.loop import run
from tests.numpy_reference import randomize

BACKBONE = dict(preset="bert_tiny", num_layers=2, hidden_size=32, num_heads=2, intermediate_size=64)


def _backbone(folder, seed):
    """A random BERT backbone saved as a rofjax checkpoint (what `rofjax convert` or a pre-training run leaves)."""
    from rofjax.training.tasks import build_tokenizer

    vocab_size = build_tokenizer(get_config()).vocab_size
    config = get_preset(BACKBONE["preset"], vocab_size=vocab_size,
                        **{k: v for k, v in BACKBONE.items() if k != "preset"})
    ids = np.ones((1, 8), np.int32)
    shapes = jax.eval_shape(Encoder(config).init, jax.random.key(0), ids)["params"]
    params = randomize(shapes, np.random.default_rng(seed), scale=0.1)
    save_params(folder, {"encoder": params}, config)
    return str(folder)


def _lst_config(design, backbone, steps=4):
    config = get_config()
    config.unlock()
    for key, value in BACKBONE.items():
        config.model[key] = value
    config.model.side_hidden_size, config.model.side_intermediate_size, config.model.side_num_layers = 16, 32, 2
    config.lst = design
    config.train.init_checkpoint = backbone
    config.data.max_length = 24
    config.train.batch_size = 8
    config.train.total_steps = steps
    config.train.save_every = 2
    config.train.progress_bar = False
    config.eval.every = 0
    config.eval.examples = 16
    return config


def _files_digest(folder):
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            digest.update(name.encode())
            with open(os.path.join(root, name), "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def su_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lst")
    backbone = _backbone(root / "backbone", seed=0)
    before = _files_digest(backbone)
    workdir = str(root / "run")
    result = run(_lst_config("su", backbone), workdir)
    return root, backbone, before, workdir, result


def test_an_lst_run_stores_only_the_side_network_and_head(su_run):
    _, backbone, before, workdir, result = su_run
    assert 0.0 <= result["accuracy"] <= 1.0
    for folder in ("checkpoints", "best"):
        stored = restore_params(os.path.join(workdir, folder))
        assert sorted(stored) == ["classifier", "encoder"] and sorted(stored["encoder"]) == ["side"], folder
    assert _files_digest(backbone) == before                       # the backbone checkpoint is untouched


def test_the_backbone_used_is_bit_identical_to_its_checkpoint(su_run):
    _, backbone, _, workdir, _ = su_run
    stored = restore_params(backbone)["encoder"]
    expected = {"encoder": {k: stored[k] for k in ("embeddings", "transformer")}}
    assert RunFolder(workdir).backbone() == {"checkpoint": os.path.abspath(backbone),
                                             "fingerprint": fingerprint(expected)}
    params = RunFolder(workdir).attach_backbone(restore_params(os.path.join(workdir, "best")))
    for a, b in zip(jax.tree_util.tree_leaves(params["encoder"]["transformer"]),
                    jax.tree_util.tree_leaves(expected["encoder"]["transformer"]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_an_exported_lst_model_carries_its_backbone_and_predicts(su_run, tmp_path):
    import rofjax
    from rofjax.checkpoint.tree import flatten
    from rofjax.export import export, load

    _, backbone, _, workdir, _ = su_run
    model = export(workdir, tmp_path / "model")
    exported = flatten(load(model).params)
    stored = flatten(restore_params(backbone)["encoder"])
    for name in ("embeddings/word_embeddings/embedding", "transformer/layer_0/attention/q_dense/kernel"):
        matches = [k for k in exported if k.endswith(name)]
        assert matches, name
        np.testing.assert_array_equal(np.asarray(exported[matches[0]]), np.asarray(stored[name]))
    results = rofjax.pipeline("classification", model, batch_size=8)(["很好", "太差了"])
    assert [r["label"] for r in results] == [r["label"] for r in rofjax.pipeline("classification", workdir,
                                                                                batch_size=8)(["很好", "太差了"])]


def test_a_rerun_on_another_backbone_is_refused(su_run):
    root, _, _, workdir, _ = su_run
    other = _backbone(root / "other", seed=1)
    with pytest.raises(CheckpointMismatchError, match="was trained on the backbone .*holds other parameters"):
        run(_lst_config("su", other, steps=6), workdir)


def test_lst_needs_a_backbone_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="config.lst='gated' .*set config.train.init_checkpoint"):
        run(_lst_config("gated", ""), str(tmp_path))


def test_the_trainer_keeps_no_optimizer_state_for_the_backbone(tmp_path):
    from rofjax.parallel.mesh import mesh_from_config
    from rofjax.training.loop import build_trainer
    from rofjax.training.tasks import build_task

    config = _lst_config("gated", "unused")
    task = build_task(config)
    trainer = build_trainer(config, task, mesh_from_config(config), 4)
    state = trainer.abstract_state(8)
    size = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))
    trained, frozen = split_backbone(nn.unbox(jax.eval_shape(
        lambda: task.init_params(jax.random.key(0), task.init_batch(8)))), task.model_config)
    assert size(state.params) == size(trained) and size(state.frozen) == size(frozen) > 10 * size(trained)
    assert size(state.opt_state) < 3 * size(trained) + 100                # AdamW moments of the trained part only
    assert not hasattr(state.checkpointed(), "frozen")


def test_fisher_information_sums_squared_single_example_gradients():
    import jax.numpy as jnp

    from rofjax.training.fisher import fisher_information

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 3)).astype(np.float32), rng.normal(size=10).astype(np.float32)
    params = {"w": rng.normal(size=3).astype(np.float32), "b": np.float32(0.3)}

    def loss(p, batch):                   # a batch mean: on one example, that example's own loss
        return jnp.mean((batch["x"] @ p["w"] + p["b"] - batch["y"]) ** 2)

    batches = [{"x": x[i:i + 4], "y": y[i:i + 4]} for i in (0, 4, 8)]
    for examples, used in ((7, 7), (50, 10)):
        total, seen = fisher_information(loss, params, iter(batches), examples)
        residual = x[:used].astype(np.float64) @ params["w"] + params["b"] - y[:used]
        assert seen == used
        np.testing.assert_allclose(total["w"], ((2 * residual[:, None] * x[:used]) ** 2).sum(0), rtol=1e-5)
        np.testing.assert_allclose(total["b"], ((2 * residual) ** 2).sum(), rtol=1e-5)


def test_a_fisher_initialised_side_network_starts_from_pruned_backbone_weights(tmp_path):
    backbone = _backbone(tmp_path / "backbone", seed=3)
    config = _lst_config("gated", backbone, steps=1)
    config.model.side_hidden_size = config.model.side_intermediate_size = config.model.side_num_layers = None
    config.lst_init, config.lst_fisher_examples, config.optim.lr = "fisher", 6, 0.0     # no update: the start
    run(config, str(tmp_path / "run"))
    side = restore_params(str(tmp_path / "run" / "checkpoints"))["encoder"]["side"]
    layers = restore_params(backbone)["encoder"]["transformer"]
    for j in range(BACKBONE["num_layers"]):
        for part, name in (("attention", "q_dense"), ("attention", "o_dense"), ("feedforward", "i_dense")):
            pruned, full = side[f"layer_{j}"][part][name]["kernel"], layers[f"layer_{j}"][part][name]["kernel"]
            assert pruned.shape == (full.shape[0] // 8, full.shape[1] // 8)
            assert np.isin(pruned, full).all()          # every weight is the backbone's own
    config.lst = "su"
    with pytest.raises(ValueError, match="lst_init='fisher'.*config.lst='gated'"):
        run(config, str(tmp_path / "su"))


@pytest.mark.slow
@pytest.mark.parametrize("task,design", [("cmrc2018", "gated"), ("c3", "su")])
def test_lst_trains_the_clue_heads_and_predicts_with_the_recorded_backbone(tmp_path, monkeypatch, task, design):
    """Span (GlobalPointer over positions) and multiple-choice heads on a side network; prediction puts the
    recorded backbone back in."""
    import importlib

    from tests.clue_fixtures import write_clue_task
    from train.predict import predict

    monkeypatch.setenv("HOME", str(tmp_path))
    backbone = _backbone(tmp_path / "backbone", seed=2)
    config = importlib.import_module(f"configs.clue.{task}").get_config()
    config.unlock()
    for key, value in BACKBONE.items():
        config.model[key] = value
    config.model.side_num_layers = 2
    config.lst, config.train.init_checkpoint = design, backbone
    config.data.data_dir = write_clue_task(tmp_path / "data", task)
    config.data.max_length, config.data.head_size, config.data.doc_stride = 48, 16, 8
    config.train.total_steps, config.train.batch_size, config.train.progress_bar = 2, 8, False
    result = run(config, str(tmp_path / "run"))
    assert result and all(np.isfinite(v) for v in result.values())
    stored = restore_params(str(tmp_path / "run" / "checkpoints"))
    assert sorted(stored["encoder"]) == ["side"]
    assert os.path.exists(predict(config, str(tmp_path / "run")))


def test_checkpoints_keep_the_layout_older_runs_were_saved_in():
    """Run folders written before frozen parameters existed must still resume (orbax matches trees by key)."""
    import dataclasses

    from rofjax.training.state import SavedState, TrainState

    assert [f.name for f in dataclasses.fields(SavedState)] == ["step", "params", "opt_state", "rng", "ema_params"]
    state = TrainState(step=1, params={"a": 1}, opt_state=(), rng=2, frozen={"b": 3})
    assert TrainState.from_saved(state.checkpointed(), state.frozen) == state
