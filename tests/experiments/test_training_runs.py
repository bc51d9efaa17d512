"""What the training-run experiments read back: loss curves, divergences, residual-branch sizes, the compile cache."""

import json
import types

import numpy as np
import pytest

from rofjax.experiments import training_runs
from rofjax.experiments.training_runs import branch_ratios, read_curve, window_means, with_overrides


def test_read_curve_keeps_the_last_row_of_a_step_and_reads_null_as_nan(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 1, "loss": 9.0}, {"step": 2, "loss": 8.0}, {"step": 2, "loss": 7.5}, {"step": 3, "loss": None}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    curve = read_curve(str(path))
    assert [step for step, _ in curve] == [1, 2, 3] and curve[1][1] == 7.5 and np.isnan(curve[2][1])
    assert read_curve(str(tmp_path / "missing.jsonl")) == []
    assert window_means([[1, 1.0], [2, 3.0], [3, 5.0]], 2) == [[2, 2.0], [3, 5.0]]


def test_with_overrides_sets_dotted_keys_on_a_copy():
    from configs.pretrain.tiny_mlm import get_config

    base = get_config()
    changed = with_overrides(base, {"optim.lr": 0.5, "model.num_layers": 7, "seed": 3})
    assert (changed.optim.lr, changed.model.num_layers, changed.seed) == (0.5, 7, 3)
    assert base.optim.lr != 0.5
    with pytest.raises(KeyError):
        with_overrides(base, {"optim.no_such_key": 1})


def test_a_divergence_is_recorded_with_its_step_not_raised(tmp_path, monkeypatch):
    from configs.pretrain.tiny_mlm import get_config
    from rofjax.training import loop

    def diverging(config, workdir):
        with open(f"{workdir}/metrics.jsonl", "a", encoding="utf-8") as handle:
            for step, loss in ((1, 8.0), (2, 9.5)):
                handle.write(json.dumps({"step": step, "loss": loss}) + "\n")
        print("progress that belongs in train.log")
        raise loop.NonFiniteLossError("non-finite loss (nan) at step 3")

    monkeypatch.setattr(loop, "run", diverging)
    config = with_overrides(get_config(), {"train.nonfinite": "stop"})
    got = training_runs.train(config, str(tmp_path / "run"))
    assert got["diverged_at"] == 3 and got["result"] == {} and got["curve"] == [[1, 8.0], [2, 9.5]]
    assert "progress that belongs" in (tmp_path / "run" / "train.log").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="nonfinite='stop'"):
        training_runs.train(with_overrides(get_config(), {"train.nonfinite": "skip"}), str(tmp_path / "other"))


def _rms_norm(x):
    return x / np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True))


def test_branch_ratios_measure_each_branch_against_the_stream_it_joins():
    rng = np.random.default_rng(0)
    layers, shape = 2, (2, 5, 4)
    doc_ids = np.ones(shape[:2], np.int32)
    doc_ids[1, 3:] = 0                                                   # padding is not counted
    x0 = rng.normal(size=shape)
    branches = {"gau": rng.normal(size=(layers, *shape)) * np.array([0.1, 3.0])[:, None, None, None]}
    norms = {"gau": rng.normal(size=(layers, *shape))}
    real = doc_ids[..., None] > 0

    def size(x):
        return np.sqrt(np.sum(np.square(x) * real))

    post = types.SimpleNamespace(num_layers=layers, block_type="gau", norm_position="post")
    ratios = branch_ratios(post, (x0, branches, norms), doc_ids)
    np.testing.assert_allclose(ratios, [size(branches["gau"][0]) / size(x0),
                                        size(branches["gau"][1]) / size(norms["gau"][0])])
    pre = types.SimpleNamespace(num_layers=layers, block_type="gau", norm_position="pre")
    ratios = branch_ratios(pre, (x0, branches, norms), doc_ids)
    np.testing.assert_allclose(ratios, [size(branches["gau"][0]) / size(x0),
                                        size(branches["gau"][1]) / size(x0 + branches["gau"][0])])


@pytest.mark.parametrize("position", ["post", "pre"])
def test_branch_outputs_rebuild_the_encoders_stream(position):
    """The captured branches, added up the way each norm position adds them, give the encoder's own output."""
    import jax
    from flax import linen as nn

    from rofjax.models import Encoder, get_preset

    config = get_preset("roformer_v2_tiny", num_layers=2, hidden_size=8, num_heads=2, intermediate_size=16,
                        vocab_size=50, norm_position=position, scan_layers=True, initializer="xavier")
    ids = np.random.default_rng(1).integers(5, 50, size=(2, 6)).astype(np.int32)
    doc_ids = np.ones_like(ids)
    doc_ids[1, 4:], ids[1, 4:] = 0, 0
    batch = {"input_ids": ids, "positions": np.tile(np.arange(6, dtype=np.int32), (2, 1)), "doc_ids": doc_ids}
    model = Encoder(config)

    @jax.jit
    def run(batch):
        params = nn.unbox(model.init(jax.random.key(0), batch["input_ids"])["params"])
        hidden = model.apply({"params": params}, batch["input_ids"], positions=batch["positions"],
                             attention_mask=batch["doc_ids"] > 0)
        return training_runs.branch_outputs(config)(params, batch), hidden

    (stream, branches, norms), hidden = run(batch)
    x = np.asarray(stream, np.float64)
    for layer in range(2):
        for name in ("attention", "feedforward"):
            branch = np.asarray(branches[name][layer], np.float64)
            x = x + branch if position == "pre" else _rms_norm(x + branch)
            if position == "post":
                np.testing.assert_allclose(x, norms[name][layer], atol=1e-4)
    np.testing.assert_allclose(_rms_norm(x) if position == "pre" else x, hidden, atol=1e-4)
    assert len(branch_ratios(config, (stream, branches, norms), doc_ids)) == 4


def test_compilation_cache_is_scoped_to_the_block(tmp_path):
    import jax

    before = jax.config.jax_compilation_cache_dir
    with training_runs.compilation_cache(str(tmp_path / "cache")):
        inside = jax.config.jax_compilation_cache_dir
        jax.jit(lambda v: v * 2)(np.ones(3)).block_until_ready()
    assert jax.config.jax_compilation_cache_dir == before
    assert inside == (before or str(tmp_path / "cache"))
    with training_runs.compilation_cache(None):
        assert jax.config.jax_compilation_cache_dir == before
