"""Write submission files: python -m train.predict --config CONFIG --workdir DIR [--config.data_dir=FOLDER]

Reads the best parameters of the run in DIR (`best/`, else the latest `checkpoints/` step; `--checkpoint` names
others), decodes the dataset's test file on the host and writes `DIR/<dataset>_predict.json` in the format the
leaderboard takes (CLUE, CLUENER, DuEE, DuIE); the path is printed on the last line. The model's shape (preset,
sizes, head size, max_length, vocabulary) comes from the config saved with the run.
"""

import json
import os
import sys

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "The training config of the run.", lock_config=True)
flags.DEFINE_string("workdir", None, "The run's folder (holds best/ or checkpoints/).")
flags.DEFINE_string("input", None, "File to predict (default: the dataset's test file).")
flags.DEFINE_string("checkpoint", None, "Parameters to predict with: a run's best/ or checkpoints/ folder, one step "
                    "of them, or a converted checkpoint (default: DIR/best, else DIR/checkpoints).")
flags.mark_flags_as_required(["config", "workdir"])

TEST_FILES = {"duee": ("duee_test2.json", "duee_test.json", "duee_dev.json"),
              "duie": ("duie_test.json", "duie_dev.json"),
              "cluener": ("test.json",)}


def prediction_records(config, input_path, workdir):
    from rofjax.data import ie_formats
    from rofjax.training import loop

    if config.task == "clue" or (config.dataset == "cluener" and input_path is None):
        from rofjax.data import clue

        if input_path is None:
            source = loop.clue_split(config, "test")
            return list(source), f"the {config.dataset} test split of {config.data_dir}"
        return list(clue.read_split(config.dataset, [input_path])), input_path
    if config.dataset == "peoples_daily_ner" and input_path is None:
        return loop._sources(config, workdir)[1], "dev split"
    folder = loop._ie_folder(config) if config.dataset in ("duee", "duie") else config.data_dir
    if input_path is None:
        candidates = [os.path.join(folder, name) for name in TEST_FILES.get(config.dataset, ())]
        input_path = next((c for c in candidates if os.path.exists(c)), None)
        if input_path is None:
            raise FileNotFoundError(f"no test file for {config.dataset} in {folder} (looked for "
                                    f"{[os.path.basename(c) for c in candidates]}); pass --input.")
    if config.dataset == "duee":
        schema = ie_formats.read_duee_schema(os.path.join(folder, "duee_event_schema.json"))
        return list(ie_formats.read_duee(input_path, schema)), input_path
    if config.dataset == "duie":
        predicates = ie_formats.read_duie_schema(os.path.join(folder, "duie_schema.json"))
        return list(ie_formats.read_duie(input_path, predicates)), input_path
    if config.dataset == "cluener":
        return list(ie_formats.read_cluener(input_path)), input_path
    raise ValueError(f"train.predict does not know the test file of dataset {config.dataset!r}.")


ARCHITECTURE_KEYS = ("model_preset", "model", "head_size", "max_length", "vocab_path", "entity_types", "pooling",
                     "num_labels", "word_level", "doc_stride")


def adopt_run_architecture(config, workdir: str) -> None:
    """Take the model-shaping keys from the config the run saved with its checkpoints, so that predicting needs
    no repetition of training-time overrides."""
    from rofjax.checkpoint.manager import latest_step

    root = os.path.join(workdir, "checkpoints")
    step = latest_step(root) if os.path.isdir(root) else None
    path = os.path.join(root, str(step), "config", "metadata") if step is not None else None
    if path is None or not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    for key in ARCHITECTURE_KEYS:
        if key in saved:
            config[key] = saved[key] if key != "model" else {**config.model.to_dict(), **saved["model"]}


def predict(config, workdir: str, input_path: str | None = None, checkpoint: str | None = None) -> str:
    """Write the submission file of the run in `workdir` and return its path."""
    import jax

    from rofjax.checkpoint import restore_params
    from rofjax.parallel.mesh import mesh_from_config, replicated, rules_from_config, sharding_context
    from rofjax.training.loop import build_task

    workdir = os.path.abspath(workdir)
    adopt_run_architecture(config, workdir)
    task = build_task(config)
    if not hasattr(task, "submission") and not hasattr(task, "write_submission"):
        raise app.UsageError(f"train.predict writes submissions for CLUE, events, ner and relations tasks; "
                             f"{config.task!r} has none yet.")
    source = checkpoint or os.path.join(workdir, "best")
    if checkpoint is None and (not os.path.isdir(source) or not any(d.isdigit() for d in os.listdir(source))):
        source = os.path.join(workdir, "checkpoints")
    params = restore_params(source)
    records, origin = prediction_records(config, input_path, workdir)
    mesh = mesh_from_config(config)
    params = jax.device_put(params, replicated(mesh))        # restored on one device; the step runs on the mesh
    with sharding_context(mesh, rules_from_config(config)):
        predictions = task.decode(params, records, config.batch_size)
    out = os.path.join(workdir, f"{config.dataset}_predict.json")
    tmp = out + ".tmp"
    if hasattr(task, "write_submission"):
        task.write_submission(tmp, records, predictions)
    else:
        with open(tmp, "w", encoding="utf-8") as f:
            for record, prediction in zip(records, predictions):
                f.write(json.dumps(task.submission(record, prediction), ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    print(f"predicted {len(records)} records of {origin} with the parameters in {source}", file=sys.stderr)
    return out


def main(argv):
    del argv
    print(predict(FLAGS.config, FLAGS.workdir, FLAGS.input, FLAGS.checkpoint))


if __name__ == "__main__":
    app.run(main)
