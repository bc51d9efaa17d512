"""The GAU-α vs RoFormerV2 length sweep at its smoke size."""

import json
import os


def test_length_sweep_smoke_has_a_row_per_model_and_length(tmp_path):
    import matplotlib.image

    from configs.experiments.gau_vs_attention import get_config
    from rofjax.experiments import run_experiment

    config = get_config()
    config.smoke = True
    config.smoke_settings.lengths = "64"            # one length: three compiled steps (the third with FLASH chunks)
    path = run_experiment(config, str(tmp_path), log=lambda line: None)
    text = open(path, encoding="utf-8").read()
    rows = [line.split("|")[1:3] for line in text.splitlines() if line.startswith("| roformer_v2 ")
            or line.startswith("| gau_alpha ")]
    assert [(m.strip(), int(n)) for m, n in rows] == [("roformer_v2", 64), ("gau_alpha", 64),
                                                      ("gau_alpha (chunks of 16)", 64)]
    data = json.load(open(os.path.join(tmp_path, "results.json")))["rows"]
    reserved = {row["variant"]: row["metrics"]["reserved_mib"] for row in data}
    assert all(value > 0 for value in reserved.values())
    assert matplotlib.image.imread(os.path.join(tmp_path, "gau_vs_attention.png")).shape[1] > 100
