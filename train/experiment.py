"""Run one of the claim-testing experiments and write its tables and plots.

    rofjax experiment --config experiments/probe --workdir W [--config.smoke=True] [--config.seeds=5]
    (or python -m train.experiment --config configs/experiments/probe.py --workdir W)

Writes W/results.md (mean ± std over seeds, the findings, the settings), W/results.json (every seed) and PNG figures
in W. Finished runs are kept in W/runs.jsonl: rerunning skips them.
"""

import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from train._errors import describe_program, parse_flags, report_user_errors

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "An experiment config (configs/experiments/...).", lock_config=True)
flags.DEFINE_string("workdir", None, "Results, figures and the finished runs go here; rerunning resumes.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    for name in ("absl", "jax", "orbax", "tensorflow_datasets"):
        logging.getLogger(name).setLevel(logging.WARNING)
    absl_logging.set_verbosity(absl_logging.ERROR)        # tfds notices about its local builders would bury the rows
    from rofjax.experiments import run_experiment

    config = FLAGS.config
    if "experiment" not in config:
        raise app.UsageError(f"{config_flags.get_config_filename(FLAGS['config'])} is not an experiment config (it "
                             f"has no `experiment` key); see configs/experiments/.", exitcode=2)
    path = report_user_errors(lambda: run_experiment(config, FLAGS.workdir, log=lambda line: print(line, flush=True)))
    print(f"wrote {path}")
    print(f"see {os.path.dirname(path)} for the figures")
    sys.stdout.flush()


if __name__ == "__main__":
    describe_program("Claim-testing experiments (tables of mean ± std over seeds, PNG figures): rofjax experiment "
                     "--config experiments/NAME --workdir DIR [--config.smoke=True]", ("config", "workdir"),
                     configs=lambda name: name.startswith("experiments/"))
    app.run(main, flags_parser=parse_flags)
