"""Shared entry point of the training programs: parse `--config` (with `--config.key=value` overrides) and
`--workdir`, then run the loop. Errors a user can fix (a bad key or value, a missing or malformed file, a run
folder in use, an exploding loss) end the program with one line naming what is wrong, not a traceback."""

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

from train._errors import describe_program, parse_flags, report_user_errors

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "A config file defining get_config(), or a bundled config by name (clue/tnews).", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics and TensorBoard logs go here; rerunning resumes.")
flags.mark_flags_as_required(["config", "workdir"])


def main(program: str):
    """`program`: "pretrain" (masked-LM configs) or "finetune" (every other task)."""

    def _run(argv):
        del argv
        for name in ("absl", "jax", "orbax", "tensorflow_datasets"):
            logging.getLogger(name).setLevel(logging.WARNING)
        from rofjax.training.loop import NonFiniteLossError, run

        config, path = FLAGS.config, config_flags.get_config_filename(FLAGS["config"])
        wanted = "pretrain" if config.task == "mlm" else "finetune"
        if wanted != program:
            raise app.UsageError(f"{path} is a config.task={config.task!r} config; run it with rofjax {wanted} "
                                 f"(python -m train.{wanted}).", exitcode=2)
        try:
            result = report_user_errors(lambda: run(config, FLAGS.workdir))
        except NonFiniteLossError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(3)
        for name, value in result.items():
            print(f"dev {name}: {value:.4f}" if isinstance(value, float) else f"dev {name}: {value}")

    what = "Masked-LM pre-training" if program == "pretrain" else \
        "Fine-tuning (classification, CLUE, NER, relations, events; any config whose task is not mlm)"
    describe_program(f"{what}: rofjax {program} --config CONFIG --workdir DIR [--config.key=value ...]\n"
                     f"(also python -m train.{program} ...). Rerunning with the same --workdir resumes.",
                     ("config", "workdir"),
                     configs=(lambda name: name.startswith("pretrain/")) if program == "pretrain" else
                     (lambda name: not name.startswith(("pretrain/", "experiments/"))))
    app.run(_run, flags_parser=parse_flags)
