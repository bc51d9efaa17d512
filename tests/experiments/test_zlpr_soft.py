"""The soft-label ZLPR experiment: its metrics against plain float64 loops, its targets, what mixup mixes, and the
smoke size end to end."""

import json
import os

import numpy as np

from rofjax.experiments.zlpr_soft import (
    TYPES,
    VARIANTS,
    calibration_error,
    expected_calibration_error,
    micro_f1,
    reliability_bins,
    sentence_labels,
    soft_targets,
)


def _ece_by_hand(probabilities, labels, bins):
    p, y = np.ravel(probabilities).astype(np.float64), np.ravel(labels).astype(np.float64)
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = [i for i in range(len(p)) if low <= p[i] < high or (b == bins - 1 and p[i] == 1.0)]
        if inside:
            confidence = sum(p[i] for i in inside) / len(inside)
            frequency = sum(y[i] for i in inside) / len(inside)
            total += len(inside) / len(p) * abs(frequency - confidence)
    return total


def test_ece_matches_a_loop_over_bins():
    rng = np.random.default_rng(0)
    probabilities = rng.uniform(size=(200, 3))
    probabilities[0] = [0.0, 0.1, 1.0]                   # bin edges: 0.1 opens the second bin, 1.0 closes the last
    labels = (rng.uniform(size=(200, 3)) < probabilities).astype(np.float64)
    for bins in (10, 7):
        assert abs(expected_calibration_error(probabilities, labels, bins) - _ece_by_hand(probabilities, labels,
                                                                                        bins)) < 1e-12
    table = reliability_bins(probabilities, labels, 10)
    assert table[:, 0].sum() == 600 and table[1, 0] == np.sum((probabilities >= 0.1) & (probabilities < 0.2))
    # Seeds pool by adding their tables.
    halves = reliability_bins(probabilities[:100], labels[:100], 10) + reliability_bins(probabilities[100:],
                                                                                         labels[100:], 10)
    assert abs(calibration_error(halves) - calibration_error(table)) < 1e-12
    assert expected_calibration_error([0.25] * 4 + [0.75] * 4, [0, 0, 0, 1, 1, 1, 1, 0]) == 0.0
    assert abs(expected_calibration_error([0.05, 0.95], [1, 0]) - 0.95) < 1e-12


def test_micro_f1_counts_every_example_and_class():
    scores = np.array([[1.0, -1.0, 0.5], [-0.5, 2.0, -3.0], [0.0, 0.1, -0.1]])
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]])
    tp, fp, fn = 3, 1, 2                                 # (0,0) (1,1) (2,1); (0,2); (1,0) (2,2)
    assert abs(micro_f1(scores, labels) - 2 * tp / (2 * tp + fp + fn)) < 1e-12
    assert micro_f1(-np.ones((2, 3)), np.zeros((2, 3))) == 1.0


def test_targets_of_each_variant():
    labels = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 0]], np.float32)
    settings = {"label_smoothing": 0.1, "mixup_alpha": 0.4}
    targets, partner, lam = soft_targets("hard", labels, np.random.default_rng(0), settings)
    np.testing.assert_array_equal(targets, labels)
    assert list(partner) == [0, 1, 2, 3] and (lam == 1).all()
    targets, _, _ = soft_targets("label smoothing", labels, np.random.default_rng(0), settings)
    np.testing.assert_allclose(targets, np.where(labels == 1, 0.95, 0.05), atol=1e-7)
    targets, partner, lam = soft_targets("mixup", labels, np.random.default_rng(0), settings)
    assert sorted(partner) == [0, 1, 2, 3] and ((lam >= 0) & (lam <= 1)).all()
    np.testing.assert_allclose(targets, lam[:, None] * labels + (1 - lam[:, None]) * labels[partner], atol=1e-6)


def test_a_type_counts_only_when_its_entity_is_inside_the_tokens_read():
    from rofjax.data.tokenizer import Tokenizer
    from rofjax.data.vocab import EMBEDDED_VOCAB

    tokenizer = Tokenizer(EMBEDDED_VOCAB)
    record = {"text": "江泽民在北京会见了联合国代表", "entities": [("PER", 0, 3), ("LOC", 4, 6), ("ORG", 9, 12)]}
    _, present = sentence_labels(tokenizer, record, 32)
    assert present.tolist() == [1, 1, 1] and TYPES == ("PER", "LOC", "ORG")
    ids, present = sentence_labels(tokenizer, record, 8)          # [CLS] + 6 characters + [SEP]
    assert len(ids) == 8 and present.tolist() == [1, 1, 0]


def test_mixup_mixes_the_pooled_vectors():
    import jax
    import jax.numpy as jnp

    from rofjax.experiments.zlpr_soft import sentence_classifier
    from rofjax.models.config import get_preset

    config = get_preset("roformer_v2_tiny", vocab_size=50, num_layers=1, hidden_size=16, num_heads=2,
                        intermediate_size=32)
    net = sentence_classifier(config, "mean", 3)
    ids = jnp.asarray(np.random.default_rng(0).integers(5, 50, size=(4, 6)), jnp.int32).at[0, 4:].set(0)
    identity, partner = jnp.arange(4), jnp.asarray([2, 3, 0, 1])
    params = jax.jit(net.init)(jax.random.key(0), ids, identity, jnp.ones(4))
    apply = jax.jit(net.apply)
    plain = apply(params, ids, identity, jnp.ones(4))
    np.testing.assert_allclose(apply(params, ids, partner, jnp.ones(4)), plain, atol=1e-6)
    np.testing.assert_allclose(apply(params, ids, partner, jnp.zeros(4)), plain[partner], atol=1e-5)
    # The head is linear in the pooled vector: mixing the vectors mixes the scores (bias included, λ + 1 − λ = 1).
    lam = jnp.asarray([0.3, 0.5, 0.9, 0.0])
    np.testing.assert_allclose(apply(params, ids, partner, lam),
                               lam[:, None] * plain + (1 - lam[:, None]) * plain[partner], atol=1e-5)


def test_zlpr_soft_smoke_writes_one_row_per_variant_and_resumes(tmp_path):
    import matplotlib.image

    from configs.experiments.zlpr_soft import get_config
    from rofjax.experiments import run_experiment

    config = get_config()
    config.smoke = True
    lines = []
    path = run_experiment(config, str(tmp_path), log=lines.append)
    text = open(path, encoding="utf-8").read()
    table = [line for line in text.splitlines() if line.startswith("| ") and line.split("|")[1].strip() in VARIANTS]
    assert [line.split("|")[1].strip() for line in table] == list(VARIANTS)
    assert len(lines) == len(VARIANTS)                            # one seed per variant
    figure = matplotlib.image.imread(os.path.join(tmp_path, "zlpr_soft_reliability.png"))
    assert figure.shape[0] > 100 and figure.shape[1] > 100
    rows = json.load(open(os.path.join(tmp_path, "results.json")))["rows"]
    assert len(rows) == len(VARIANTS)
    for row in rows:
        bins = np.asarray(row["curves"]["reliability"])
        assert bins.shape == (config.bins, 3) and bins[:, 0].sum() == 32 * len(TYPES)
        assert 0 <= row["metrics"]["ece"] <= 1 and 0 <= row["metrics"]["micro_f1"] <= 1
        assert abs(calibration_error(bins) - row["metrics"]["ece"]) < 1e-12
    again = []
    run_experiment(config, str(tmp_path), log=again.append)
    assert again == []                                           # every run was kept, none repeated
