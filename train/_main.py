"""Shared entry point of the training programs: parse `--config` (with `--config.key=value` overrides) and
`--workdir`, then run the loop."""

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "A configs/*.py file defining get_config().", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics and TensorBoard logs go here; rerunning resumes.")
flags.mark_flags_as_required(["config", "workdir"])


def main(expected_task: str):
    def _run(argv):
        del argv
        for name in ("absl", "jax", "orbax", "tensorflow_datasets"):
            logging.getLogger(name).setLevel(logging.WARNING)
        from rofjax.training.loop import NonFiniteLossError, run

        config = FLAGS.config
        expected = (expected_task,) if isinstance(expected_task, str) else tuple(expected_task)
        if config.task not in expected:
            raise app.UsageError(f"{FLAGS['config'].value!r} is a {config.task!r} config; use "
                                 f"train.{'pretrain' if config.task == 'mlm' else 'finetune'}.")
        try:
            result = run(config, FLAGS.workdir)
        except NonFiniteLossError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(3)
        for name, value in result.items():
            print(f"dev {name}: {value:.4f}" if isinstance(value, float) else f"dev {name}: {value}")

    app.run(_run)
