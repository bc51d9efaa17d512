"""Write submission files: python -m train.predict --config CONFIG --workdir DIR [--config.data.data_dir=FOLDER]

Reads the best parameters of the run in DIR (`best/`, else the latest `checkpoints/` step; `--checkpoint` names
others), decodes the dataset's test split (or `--input`) on the host and writes `DIR/<dataset>_predict.json` in the
format the leaderboard takes (CLUE, CLUENER, DuEE, DuIE; `DatasetSpec.writer`); the path is printed on the last
line. The model's shape (preset, sizes, head size, max_length, vocabulary) comes from the config saved with the run.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from train._errors import describe_program, parse_flags, report_user_errors

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "The training config of the run (a file, or a bundled config by name).", lock_config=True)
flags.DEFINE_string("workdir", None, "The run's folder (holds best/ or checkpoints/).")
flags.DEFINE_string("input", None, "File to predict (default: the dataset's test file).")
flags.DEFINE_string("checkpoint", None, "Parameters to predict with: a run's best/ or checkpoints/ folder, one step "
                    "of them, or a converted checkpoint (default: DIR/best, else DIR/checkpoints).")
flags.mark_flags_as_required(["config", "workdir"])

# The keys that shape the model, as (section, key) with the flat spelling older runs saved.
ARCHITECTURE_KEYS = (("data", "head_size", "head_size"), ("data", "max_length", "max_length"),
                     ("data", "vocab_path", "vocab_path"), ("data", "entity_types", "entity_types"),
                     ("data", "pooling", "pooling"), ("data", "num_labels", "num_labels"),
                     ("data", "word_level", "word_level"), ("data", "doc_stride", "doc_stride"),
                     ("model", "preset", "model_preset"))


def adopt_run_architecture(config, run) -> None:
    """Take the model-shaping keys from the config the run saved with its checkpoints, so that predicting needs
    no repetition of training-time overrides."""
    saved = run.saved_config()
    if saved is None:
        return
    for section, key, flat in ARCHITECTURE_KEYS:
        value = saved.get(section, {}).get(key, saved.get(flat))
        if value is not None:
            config[section][key] = value
    overrides = {k: v for k, v in saved.get("model", {}).items() if k in config.model and k != "preset"}
    for key, value in overrides.items():
        config.model[key] = tuple(value) if isinstance(value, list) else value
    if saved.get("lst"):
        config.lst = saved["lst"]


def predict(config, workdir: str, input_path: str | None = None, checkpoint: str | None = None) -> str:
    """Write the prediction file of the run in `workdir` (the dataset's leaderboard format) and return its path."""
    import jax

    from rofjax.checkpoint import restore_params
    from rofjax.checkpoint.run import RunFolder
    from rofjax.data.datasets import get_dataset
    from rofjax.parallel.mesh import mesh_from_config, replicated, rules_from_config, sharding_context
    from rofjax.training.tasks import build_task

    run = RunFolder(workdir).fetch()                       # a run in a bucket: its local copy, brought up to date
    spec = get_dataset(config.data.dataset)
    if spec.writer is None:
        raise app.UsageError(f"dataset {spec.name!r} has no prediction file format.", exitcode=2)
    adopt_run_architecture(config, run)
    task = build_task(config)
    data_dir = config.data.data_dir
    if input_path is None:
        records, origin = list(spec.split(spec.prediction_split, data_dir, config.seed)), \
            f"the {spec.prediction_split} split of {spec.name}"
    else:
        records, origin = spec.records_of_file(input_path, data_dir, config.seed), input_path
    source = checkpoint or run.params_folder()
    params = restore_params(source)
    if task.model_config.lst != "none":
        params = run.attach_backbone(params)                 # the run stores its side network and head only
    mesh = mesh_from_config(config)
    params = jax.device_put(params, replicated(mesh))        # restored on one device; the step runs on the mesh
    with sharding_context(mesh, rules_from_config(config)):
        predictions = task.decode(params, records, config.train.batch_size)
    out = os.path.join(run.workdir, f"{spec.name}_predict.json")
    spec.write_predictions(out, records, predictions, spec.labels(spec.folder(data_dir, config.seed)))
    print(f"predicted {len(records)} records of {origin} with the parameters in {source}", file=sys.stderr)
    kept = run.publish(out)
    if kept != out:
        print(f"copied to {kept}", file=sys.stderr)
    return out


def main(argv):
    del argv
    print(report_user_errors(lambda: predict(FLAGS.config, FLAGS.workdir, FLAGS.input, FLAGS.checkpoint)))


if __name__ == "__main__":
    describe_program("Submission files from a run's best parameters: rofjax submit --config CONFIG --workdir DIR "
                     "[--input FILE] [--checkpoint PATH] [--config.key=value ...] (also python -m train.predict ...)",
                     ("config", "workdir", "input", "checkpoint"),
                     configs=lambda name: not name.startswith(("pretrain/", "experiments/")))
    app.run(main, flags_parser=parse_flags)
