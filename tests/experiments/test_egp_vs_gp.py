"""The GlobalPointer vs Efficient GlobalPointer experiment's smoke size end to end, and what it reads back."""

import json
import os

from rofjax.experiments.egp_vs_gp import VARIANTS, eval_curve, head_parameters, value_at


def test_head_parameters_are_the_posts_counts():
    for hidden, heads, d in ((768, 3, 64), (128, 10, 32)):
        assert head_parameters(False, hidden, heads, d) == hidden * 2 * d * heads + 2 * d * heads
        assert head_parameters(True, hidden, heads, d) == hidden * 2 * d + 2 * d + 2 * d * 2 * heads + 2 * heads
    # The DuEE GPLinker argument head (seeds-spec §9.4): 282 heads, d = 64 on BERT-base.
    assert head_parameters(True, 768, 282, 64) == 98_432 + 72_756


def test_eval_curve_keeps_the_last_row_of_each_step(tmp_path):
    path = tmp_path / "eval_metrics.jsonl"
    rows = [{"step": 50, "f1": 0.1}, {"step": 100, "f1": 0.2}, {"step": 100, "f1": 0.25}, {"step": 150, "f1": None}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    curve = eval_curve(str(path))
    assert [c[0] for c in curve] == [50, 100, 150] and curve[1][1] == 0.25 and curve[2][1] != curve[2][1]
    assert value_at(curve, 60) == 0.25 and value_at(curve, 50) == 0.1 and value_at(curve, 151) != value_at(curve, 151)


def test_egp_vs_gp_smoke_writes_one_row_per_head_and_resumes(tmp_path):
    import matplotlib.image

    from configs.experiments.egp_vs_gp import get_config
    from rofjax.data.datasets import DATASETS
    from rofjax.experiments import run_experiment

    config = get_config()
    config.smoke = True
    lines = []
    path = run_experiment(config, str(tmp_path), log=lines.append)
    text = open(path, encoding="utf-8").read()
    table = [line for line in text.splitlines() if line.startswith("| ") and "Pointer" in line]
    assert [line.split("|")[1].strip() for line in table] == list(VARIANTS)
    assert len(lines) == len(VARIANTS)                            # one seed per head
    figure = matplotlib.image.imread(os.path.join(tmp_path, "egp_vs_gp_f1.png"))
    assert figure.shape[0] > 100 and figure.shape[1] > 100
    rows = json.load(open(os.path.join(tmp_path, "results.json")))["rows"]
    assert len(rows) == len(VARIANTS)
    for row in rows:
        steps = [step for step, _ in row["curves"]["f1"]]
        assert steps == [2, 4] and 0 <= row["metrics"]["final_f1"] <= 1
    params = {row["variant"]: row["metrics"]["head_parameters"] for row in rows}
    assert params["Efficient GlobalPointer"] < params["GlobalPointer"]
    assert not [name for name in DATASETS if name.endswith("global_pointer")]   # the copies live for one run
    again = []
    run_experiment(config, str(tmp_path), log=again.append)
    assert again == []                                           # every run was kept, none repeated
