"""Short training grids that test the claims of the posts rofjax implements, with tables and plots.

`run_experiment(config, workdir)` runs the experiment `config.experiment` names and returns the path of the
`results.md` it wrote (tables of mean ± std over seeds, findings computed from them, PNG figures beside it). The
configs live in `configs/experiments/`; `--config.smoke=True` runs each in seconds.
"""

from __future__ import annotations

import importlib
import os

EXPERIMENTS = {
    "probe": "rofjax.experiments.probe",
    "egp_vs_gp": "rofjax.experiments.egp_vs_gp",
    "zlpr_soft": "rofjax.experiments.zlpr_soft",
    "gau_vs_attention": "rofjax.experiments.gau_vs_attention",
    "gau_warmup": "rofjax.experiments.gau_warmup",
    "norms": "rofjax.experiments.norms",
}


# Settings every experiment counts with: none can be zero (a mean over no seeds, a run of no steps).
COUNTS = ("seeds", "steps", "batch_size", "eval_every", "eval_size")


def run_experiment(config, workdir: str, log=print) -> str:
    name = config.get("experiment")
    if name not in EXPERIMENTS:
        raise ValueError(f"config.experiment={name!r} is not an experiment; known: {sorted(EXPERIMENTS)}.")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise NotADirectoryError(f"--workdir {workdir} is a file; an experiment writes a folder of results.")
    for section, values in (("config", config), ("config.smoke_settings", config.get("smoke_settings") or {})):
        for key in COUNTS:
            value = values.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{section}.{key}={value!r}; expected a whole number ≥ 1.")
    return importlib.import_module(EXPERIMENTS[name]).run(config, workdir, log=log)
