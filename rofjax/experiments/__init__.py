"""Short training grids that test the claims of the posts rofjax implements, with tables and plots.

`run_experiment(config, workdir)` runs the experiment `config.experiment` names and returns the path of the
`results.md` it wrote (tables of mean ± std over seeds, findings computed from them, PNG figures beside it). The
configs live in `configs/experiments/`; `--config.smoke=True` runs each in seconds.
"""

from __future__ import annotations

import importlib

EXPERIMENTS = {
    "probe": "rofjax.experiments.probe",
    "egp_vs_gp": "rofjax.experiments.egp_vs_gp",
    "zlpr_soft": "rofjax.experiments.zlpr_soft",
    "gau_vs_attention": "rofjax.experiments.gau_vs_attention",
    "gau_warmup": "rofjax.experiments.gau_warmup",
    "norms": "rofjax.experiments.norms",
}


def run_experiment(config, workdir: str, log=print) -> str:
    name = config.get("experiment")
    if name not in EXPERIMENTS:
        raise ValueError(f"config.experiment={name!r} is not an experiment; known: {sorted(EXPERIMENTS)}.")
    return importlib.import_module(EXPERIMENTS[name]).run(config, workdir, log=log)
