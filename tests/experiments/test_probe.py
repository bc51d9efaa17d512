"""The probe experiment's smoke size end to end, and its inputs."""

import json
import os
import re

import numpy as np
import pytest

from rofjax.experiments.probe import CLS, PAD, SEP, TOKEN, chance_accuracy, probe_batch


def test_probe_batches_hold_n_identical_tokens_labelled_by_index():
    ids, labels, mask = probe_batch(np.random.default_rng(0), 6, 3, 7, specials=False)
    assert ids.shape == labels.shape == mask.shape == (6, 9)
    for row_ids, row_labels in zip(ids, labels):
        n = int((row_ids == TOKEN).sum())
        assert 3 <= n <= 7 and set(row_ids[n:]) <= {PAD} and (row_ids[:n] == TOKEN).all()
        np.testing.assert_array_equal(row_labels[:n], np.arange(n))
        assert (row_labels[n:] == -1).all()
    ids, labels, _ = probe_batch(np.random.default_rng(0), 6, 3, 7, specials=True)
    for row_ids, row_labels in zip(ids, labels):
        n = int((row_ids == TOKEN).sum())
        assert row_ids[0] == CLS and row_ids[n + 1] == SEP and row_labels[0] == -1 and row_labels[n + 1] == -1
        np.testing.assert_array_equal(row_labels[1:n + 1], np.arange(n))


def test_chance_is_one_over_n_per_token():
    assert chance_accuracy(4, 4) == 0.25
    assert abs(chance_accuracy(2, 3) - 2 / 5) < 1e-12


def test_probe_smoke_writes_one_row_per_variant_and_resumes(tmp_path):
    import matplotlib.image

    from configs.experiments.probe import get_config
    from rofjax.experiments import run_experiment

    config = get_config()
    config.smoke = True
    # Two normalisations keep this at two compiled steps; `rofjax experiment --config.smoke=True` runs all six.
    config.normalizations = "softmax,l2"
    lines = []
    path = run_experiment(config, str(tmp_path), log=lines.append)
    text = open(path, encoding="utf-8").read()
    normalizations = config.normalizations.split(",")
    table = [line for line in text.splitlines() if line.startswith("| attention |")]
    assert [line.split("|")[3].strip().strip("`") for line in table] == normalizations
    assert len(lines) == 2 * len(normalizations)                 # one run per variant and input, one seed
    figure = matplotlib.image.imread(os.path.join(tmp_path, "probe_attention_1L.png"))
    assert figure.shape[0] > 100 and figure.shape[1] > 100
    rows = json.load(open(os.path.join(tmp_path, "results.json")))["rows"]
    assert len(rows) == 2 * len(normalizations) and all(0 <= r["metrics"]["accuracy"] <= 1 for r in rows)
    again = []
    run_experiment(config, str(tmp_path), log=again.append)
    assert again == []                                           # every run was kept, none repeated


@pytest.mark.parametrize("key,value", [("seeds", 0), ("smoke_settings.steps", 0), ("eval_size", -3)])
def test_counts_no_experiment_can_use_are_refused_before_any_run(tmp_path, key, value):
    from configs.experiments import probe
    from rofjax.experiments import run_experiment

    config = probe.get_config()
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
    with pytest.raises(ValueError, match=rf"config.{re.escape(key)}={value}; expected a whole number ≥ 1"):
        run_experiment(config, str(tmp_path / "results"))
    assert not (tmp_path / "results").exists()
    (tmp_path / "a_file").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file"):
        run_experiment(probe.get_config(), str(tmp_path / "a_file"))


def test_unknown_variants_are_refused_before_the_first_run(tmp_path):
    from configs.experiments import probe
    from rofjax.experiments import run_experiment

    config = probe.get_config()
    config.smoke = True
    config.normalizations = "softmax,softmax_pluss"
    with pytest.raises(ValueError, match=r"'softmax_pluss' unknown; normalizations are softmax, softmax_plus"):
        run_experiment(config, str(tmp_path / "results"))
    config.normalizations, config.smoke_settings.layers = "softmax", "one"
    with pytest.raises(ValueError, match=r"layers='one' \(config.layers, or config.smoke_settings.layers"):
        run_experiment(config, str(tmp_path / "results"))
    assert not (tmp_path / "results").exists()
