"""The GAU-without-warmup experiment: its grid, its table with divergences, and its smoke size end to end."""

import json
import math
import os

import numpy as np
import pytest

from rofjax.experiments import gau_warmup


def _settings(**changes):
    from configs.experiments.gau_warmup import get_config

    config = get_config()
    for key, value in changes.items():
        config[key] = value
    return config


def test_grid_is_every_block_depth_init_and_warmup():
    settings = _settings(blocks="gau,attention", depths="6,12", inits="xavier,depth_scaled",
                         warmup_steps="0,20").to_dict()
    variants = gau_warmup.grid(settings)
    assert len(variants) == 2 * 2 * 2 * 2 and variants[0] == ("gau", 6, "xavier", 0)
    assert gau_warmup.variant_name("gau", 6, "xavier", 0) == "gau/6L/xavier/no warmup"
    assert gau_warmup.variant_name("attention", 24, "depth_scaled", 20) == "attention/24L/depth_scaled/warmup 20"
    for bad in ({"blocks": "gau,lstm"}, {"inits": "orthogonal"}, {"warmup_steps": f"0,{settings['steps']}"}):
        with pytest.raises(ValueError):
            gau_warmup.grid({**settings, **bad})


def test_the_runs_are_the_posts_post_norm_stacks():
    settings = _settings().to_dict()
    gau = gau_warmup.training_config(settings, "gau", 12, "xavier", 0, seed=1)
    assert (gau.model.preset, gau.model.num_layers, gau.model.intermediate_size, gau.model.num_heads) == \
        ("gau_alpha_tiny", 12, 2 * settings["hidden_size"], 1)
    assert gau.model.attention_normalization == "squared_relu" and gau.model.norm_position == "post"
    assert (gau.optim.warmup_steps, gau.optim.clip_norm, gau.train.nonfinite, gau.seed) == (0, 0.0, "stop", 1)
    attention = gau_warmup.training_config(settings, "attention", 12, "depth_scaled", 20, seed=0)
    assert (attention.model.preset, attention.model.initializer, attention.optim.warmup_steps) == \
        ("roformer_v2_tiny", "depth_scaled", 20)
    assert attention.model.intermediate_size == 4 * settings["hidden_size"]


def test_a_diverged_seed_is_counted_and_left_out_of_the_mean(tmp_path, monkeypatch):
    """The table and findings from made-up runs: attention without warmup diverges on one seed of two."""

    def fake_train(config, run_dir):
        gau, warm = config.model.preset.startswith("gau"), config.optim.warmup_steps > 0
        if not gau and not warm and config.seed == 1:
            return {"result": {}, "diverged_at": 7, "curve": [[1, 9.0], [6, 30.0]], "seconds": 0.0}
        loss = (6.0 if gau else 6.5 - 0.4 * warm) + 0.01 * config.seed
        return {"result": {"loss": loss, "accuracy": 0.1}, "diverged_at": None, "seconds": 0.0,
                "curve": [[step, loss + 1.0 / step] for step in range(1, 9)]}

    def fake_ratios(config, seed, examples):
        return np.full(config.model.num_layers, 0.01 if config.model.preset.startswith("gau") else 0.8), 0.05

    monkeypatch.setattr(gau_warmup, "train", fake_train)
    monkeypatch.setattr(gau_warmup, "initial_ratios", fake_ratios)
    config = _settings(seeds=2, depths="6", inits="xavier", warmup_steps="0,2", steps=8, compile_cache=False)
    path = gau_warmup.run(config, str(tmp_path), log=lambda line: None)
    text = open(path, encoding="utf-8").read()
    rows = {line.split("|")[1].strip() + line.split("|")[4].strip(): line for line in text.splitlines()
            if line.startswith("| gau ") or line.startswith("| attention ")}
    assert "| 6.500 ± 0.000 | 1/2 |" in rows["attentionnone"]           # the one finite seed, and the count
    assert "| 0/2 |" in rows["gaunone"] and "6.005 ± 0.007" in rows["gaunone"]
    assert "fewer GAU seeds diverged than attention seeds" in text
    results = json.load(open(os.path.join(tmp_path, "results.json")))["rows"]
    diverged = [r for r in results if r["metrics"]["diverged"]]
    assert len(diverged) == 1 and math.isnan(diverged[0]["metrics"]["final_loss"])
    assert diverged[0]["metrics"]["diverged_at"] == 7


def test_gau_warmup_smoke_writes_one_row_per_variant_and_resumes(tmp_path):
    import matplotlib.image

    from configs.experiments.gau_warmup import get_config
    from rofjax.experiments import run_experiment

    config = get_config()
    config.smoke = True
    # Without the warmup rows (the made-up runs above cover that comparison): every run here costs compiles.
    config.smoke_settings.warmup_steps = "0"
    lines = []
    path = run_experiment(config, str(tmp_path), log=lines.append)
    text = open(path, encoding="utf-8").read()
    table = [[cell.strip() for cell in line.split("|")[1:5]] for line in text.splitlines()
             if line.startswith("| gau ") or line.startswith("| attention ")]
    assert table == [["gau", "2", "xavier", "none"], ["attention", "2", "xavier", "none"]]
    assert len(lines) == len(table)                                    # one seed per variant
    figure = matplotlib.image.imread(os.path.join(tmp_path, "gau_warmup_loss.png"))
    assert figure.shape[0] > 100 and figure.shape[1] > 100
    rows = json.load(open(os.path.join(tmp_path, "results.json")))["rows"]
    for row in rows:
        metrics = row["metrics"]
        assert math.isfinite(metrics["final_loss"]) and metrics["diverged"] == 0
        assert len(row["curves"]["initial_ratios"]) == 2 * (1 + (row["config"]["block"] == "attention"))
        assert metrics["initial_ratio"] > 0
    ratio = {row["config"]["block"]: row["metrics"]["initial_ratio"] for row in rows}
    assert ratio["gau"] < ratio["attention"]                           # the post's near-identity GAU at init
    again = []
    run_experiment(config, str(tmp_path), log=again.append)
    assert again == []                                                 # every run was kept, none repeated
