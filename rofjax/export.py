"""Self-contained models: a run's parameters and everything needed to use them, in one folder.

    rofjax export RUN_DIR OUT_DIR            # or rofjax.export.export(run_dir, out_dir)

writes

    model.safetensors    the parameters (Ladder Side-Tuning runs: with their frozen backbone put back in), one
                         tensor per leaf, named by its path in the parameter tree ("encoder/embeddings/...")
    model_config.json    the encoder's `ModelConfig`
    vocab.txt            the vocabulary the run was trained with
    task.json            the task: `config.task`, the task family and its options, the label set (entity types,
                         label names, predicates or the event schema), and the training config
    README.md            a model card: task, dataset, base preset, best dev metrics, step, date

`load(folder)` reads an exported folder, or a run folder directly, into a task and its parameters; `rofjax.pipeline`
builds on it. The folder is written as `OUT_DIR.tmp-<pid>` and renamed when complete, so a failed export never
leaves a half model behind; an existing `OUT_DIR` is replaced only with `overwrite=True`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Any

import numpy as np

EXPORT_FORMAT = 1
WEIGHTS_FILE = "model.safetensors"
TASK_FILE = "task.json"
VOCAB_FILE = "vocab.txt"
LABELS_FILE = "labels.json"
CARD_FILE = "README.md"
SEPARATOR = "/"


class ExportError(ValueError):
    """A folder that cannot be exported or loaded; the message names the folder and what is missing."""


# The label set, as JSON -------------------------------------------------------------------------------------------

def labels_to_json(labels) -> Any:
    """A dataset's label set (`DatasetSpec.labels`) as JSON: a list of names, or an event schema."""
    from rofjax.data.readers.ie import EventSchema

    if labels is None:
        return None
    if isinstance(labels, EventSchema):
        return {"event_schema": {"roles": labels.roles,
                                 "enum_roles": [[*key, *value] for key, value in labels.enum_roles.items()]}}
    if isinstance(labels, (list, tuple)):
        return [list(x) if isinstance(x, tuple) else x for x in labels]
    raise ExportError(f"cannot store a label set of type {type(labels).__name__}.")


def labels_from_json(value) -> Any:
    from rofjax.data.readers.ie import EventSchema

    if isinstance(value, dict) and "event_schema" in value:
        schema = value["event_schema"]
        enum_roles = {(a, b): (c, d) for a, b, c, d in schema.get("enum_roles", [])}
        return EventSchema({k: list(v) for k, v in schema["roles"].items()}, enum_roles)
    if isinstance(value, list):
        return [tuple(x) if isinstance(x, list) else x for x in value]
    return value


# Parameters as safetensors ----------------------------------------------------------------------------------------

def save_weights(path: str, params) -> None:
    from safetensors.numpy import save_file

    from rofjax.checkpoint.tree import flatten

    flat = {name: np.ascontiguousarray(np.asarray(value)) for name, value in flatten(params).items()}
    save_file(flat, path, metadata={"format": "rofjax", "separator": SEPARATOR})
    # safetensors creates the file readable by its owner only; a model folder is meant to be shared like the rest.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def load_weights(path: str) -> dict:
    from safetensors.numpy import load_file

    from rofjax.checkpoint.tree import unflatten

    try:
        return unflatten(load_file(path))
    except Exception as error:   # noqa: BLE001 (safetensors raises several types for a damaged file)
        raise ExportError(f"{path}: not a readable safetensors file ({error}).") from error


# A loaded model ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class LoadedModel:
    """A task (tokenizer, model, decoding) with its parameters, and where they came from."""

    task: Any
    params: Any
    info: dict

    @property
    def family(self) -> str:
        return self.info["family"]


def _config_dict(saved: dict):
    import ml_collections

    return ml_collections.ConfigDict(saved)


def _build(saved_config: dict, family: str, options: dict, labels, vocab_path: str, model_config):
    from rofjax.training.tasks import TASKS, build_tokenizer

    config = _config_dict(saved_config)
    config.data.vocab_path = vocab_path
    tokenizer = build_tokenizer(config)
    if family not in TASKS:
        raise ExportError(f"task family {family!r} is not one of {sorted(TASKS)}.")
    return TASKS[family].from_config(config, model_config, tokenizer, labels, **options)


def _run_parts(run_dir: str, checkpoint: str | None = None):
    """(saved training config, family, options, labels, vocabulary path, model config, params, step, metrics) of a
    run folder."""
    from rofjax.checkpoint import restore_params
    from rofjax.checkpoint.run import CONFIG_FILE, RunFolder, load_model_config
    from rofjax.data.datasets import get_dataset
    from rofjax.data.vocab import EMBEDDED_VOCAB

    run = RunFolder(run_dir)
    saved = run.saved_config()
    if saved is None:
        raise ExportError(f"{run_dir}: not a run folder (no checkpoints/ or best/ step with its config).")
    if not os.path.exists(run.path(CONFIG_FILE)):
        raise ExportError(f"{run_dir}: no {CONFIG_FILE}; rerun the training command once to write it.")
    model_config = load_model_config(run.workdir)
    family, options = get_dataset(saved["data"]["dataset"]).task_for(saved["task"])
    recorded = run.task_inputs()
    if recorded is not None:
        vocab_path, labels = recorded
    else:      # runs made before the run folder kept its vocabulary and labels
        vocab_path = saved["data"].get("vocab_path") or EMBEDDED_VOCAB
        spec = get_dataset(saved["data"]["dataset"])
        try:
            labels = spec.labels(spec.folder(saved["data"].get("data_dir", ""), saved.get("seed", 0)))
        except (OSError, ValueError) as error:
            raise ExportError(f"{run_dir} does not hold its label set and the dataset's cannot be read "
                              f"({error}); point config.data.data_dir at the data it was trained on.") from error
        if not os.path.exists(vocab_path):
            raise ExportError(f"{run_dir}: its vocabulary {vocab_path} is gone.")
    source = checkpoint or run.params_folder()
    params = restore_params(source)
    if model_config.lst != "none":
        params = run.attach_backbone(params)
    best = run.best_row()
    return saved, family, dict(options), labels, vocab_path, model_config, params, source, best


def load(folder: str | os.PathLike, *, checkpoint: str | None = None) -> LoadedModel:
    """An exported model folder (`task.json` in it) or a training run's folder, ready to predict."""
    from rofjax.checkpoint.run import load_model_config, readable_path

    folder = readable_path(folder, "model folder")
    if not os.path.isdir(folder):
        raise ExportError(f"{folder}: no such model folder.")
    task_file = os.path.join(folder, TASK_FILE)
    if os.path.exists(task_file):
        try:
            with open(task_file, encoding="utf-8") as f:
                meta = json.load(f)
            family, options, config = meta["family"], meta["options"], meta["config"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ExportError(f"{task_file}: not a rofjax task file ({error}).") from error
        if meta.get("format", 0) > EXPORT_FORMAT:
            raise ExportError(f"{task_file}: format {meta['format']} is newer than this rofjax reads "
                              f"({EXPORT_FORMAT}); upgrade rofjax.")
        for name in (WEIGHTS_FILE, VOCAB_FILE, "model_config.json"):
            if not os.path.exists(os.path.join(folder, name)):
                raise ExportError(f"{folder}: {name} is missing; export the run again.")
        model_config = load_model_config(folder)
        labels = labels_from_json(meta.get("labels"))
        task = _build(config, family, options, labels, os.path.join(folder, VOCAB_FILE), model_config)
        params = load_weights(os.path.join(folder, WEIGHTS_FILE))
        _check_params(task, params, os.path.join(folder, WEIGHTS_FILE))
        return LoadedModel(task, params, {**meta, "source": folder})
    saved, family, options, labels, vocab, model_config, params, source, best = _run_parts(folder, checkpoint)
    task = _build(saved, family, options, labels, vocab, model_config)
    _check_params(task, params, source)
    return LoadedModel(task, params, {"task": saved["task"], "family": family, "options": options,
                                      "labels": labels_to_json(labels), "config": saved, "source": source,
                                      "metrics": best})


def _check_params(task, params, where: str) -> None:
    """The parameters fit the task's model: same tree, same shapes (names the first tensor that differs)."""
    import jax
    from flax import linen as nn

    from rofjax.checkpoint.tree import flatten

    expected = flatten(jax.eval_shape(lambda: nn.unbox(task.init_params(jax.random.key(0), task.init_batch(1)))))
    got = flatten(params)
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        raise ExportError(f"{where}: the parameters do not fit the {type(task).__name__} model: "
                          f"missing {missing[:5]}, unexpected {extra[:5]}.")
    for name, spec in expected.items():
        if tuple(np.shape(got[name])) != tuple(spec.shape):
            raise ExportError(f"{where}: tensor {name} has shape {tuple(np.shape(got[name]))}; the model needs "
                              f"{tuple(spec.shape)}.")


# Export -----------------------------------------------------------------------------------------------------------

def export(run_dir: str | os.PathLike, out_dir: str | os.PathLike, *, checkpoint: str | None = None,
           overwrite: bool = False) -> str:
    """Write the self-contained model of the run in `run_dir` to `out_dir` (see the module docstring)."""
    from rofjax.checkpoint.run import is_remote, local_path, readable_path

    if is_remote(out_dir):
        return _export_to_bucket(run_dir, os.fspath(out_dir), checkpoint=checkpoint, overwrite=overwrite)
    run_dir, out_dir = readable_path(run_dir, "run folder"), local_path(out_dir, "export folder")
    if os.path.exists(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass overwrite=True (--overwrite) to replace it.")
    if os.path.exists(out_dir):
        # overwrite replaces an earlier export, never whatever else a mistyped path points at.
        if not os.path.isdir(out_dir):
            raise FileExistsError(f"{out_dir} exists and is a file, not a model folder; choose another path.")
        if os.listdir(out_dir) and not os.path.exists(os.path.join(out_dir, TASK_FILE)):
            raise FileExistsError(f"{out_dir} is a folder but not an exported model (no {TASK_FILE}); --overwrite "
                                  f"replaces only an earlier export. Choose another path.")
    saved, family, options, labels, vocab, model_config, params, source, best = _run_parts(run_dir, checkpoint)
    task = _build(saved, family, options, labels, vocab, model_config)      # the folder must load as it is written
    _check_params(task, params, source)
    tmp = f"{out_dir}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        save_weights(os.path.join(tmp, WEIGHTS_FILE), params)
        model_config.to_json(os.path.join(tmp, "model_config.json"))
        shutil.copyfile(vocab, os.path.join(tmp, VOCAB_FILE))
        meta = {"format": EXPORT_FORMAT, "task": saved["task"], "family": family, "options": options,
                "labels": labels_to_json(labels), "dataset": saved["data"]["dataset"], "metrics": best,
                "exported_from": os.path.abspath(source), "date": time.strftime("%Y-%m-%d"), "config": saved}
        with open(os.path.join(tmp, TASK_FILE), "w", encoding="utf-8") as f:
            json.dump(meta, f, ensure_ascii=False, indent=1)
        with open(os.path.join(tmp, CARD_FILE), "w", encoding="utf-8") as f:
            f.write(model_card(meta, model_config, params))
        load(tmp)                                   # what was written reads back into the same model
        previous = f"{out_dir}.old-{os.getpid()}"
        shutil.rmtree(previous, ignore_errors=True)         # left by an export killed between the two renames
        if os.path.exists(out_dir):
            os.replace(out_dir, previous)           # the earlier export stays whole until the new one is in place
        os.replace(tmp, out_dir)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _export_to_bucket(run_dir, url: str, *, checkpoint, overwrite: bool) -> str:
    """`export` into a bucket folder: written and checked locally, then uploaded with `task.json` last, so a folder
    whose upload was cut short has no `task.json` and `load` refuses it by name."""
    import tempfile

    from etils import epath

    target = epath.Path(url.rstrip("/"))
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{url} exists; pass overwrite=True (--overwrite) to replace it.")
    with tempfile.TemporaryDirectory(prefix="rofjax-export-") as scratch:
        local = export(run_dir, os.path.join(scratch, "model"), checkpoint=checkpoint)
        target.mkdir(parents=True, exist_ok=True)
        for name in sorted(os.listdir(local), key=lambda name: name == TASK_FILE):
            with open(os.path.join(local, name), "rb") as reader, (target / name).open("wb") as writer:
                shutil.copyfileobj(reader, writer, 1 << 22)
    return url.rstrip("/")


def model_card(meta: dict, model_config, params) -> str:
    import jax

    count = sum(int(np.prod(np.shape(x))) for x in jax.tree_util.tree_leaves(params))
    labels = meta["labels"]
    if isinstance(labels, dict):
        label_line = f"{len(labels['event_schema']['roles'])} event types"
    elif labels:
        label_line = ", ".join(str(x) for x in labels[:20]) + (" …" if len(labels) > 20 else "")
    else:
        label_line = "—"
    metrics = meta.get("metrics") or {}
    shown = {k: v for k, v in metrics.items() if isinstance(v, float)}
    lines = [f"# rofjax {meta['task']} model ({meta['dataset']})", "",
             f"- task: `{meta['task']}` ({meta['family']}), labels: {label_line}",
             f"- encoder: {model_config.family}, {model_config.num_layers} layers × {model_config.hidden_size}, "
             f"vocabulary {model_config.vocab_size}" + (f", Ladder Side-Tuning ({model_config.lst})"
                                                         if model_config.lst != "none" else ""),
             f"- parameters: {count:,}",
             f"- base: `{meta['config'].get('model', {}).get('preset', '?')}`, initialised from "
             f"`{meta['config'].get('train', {}).get('init_checkpoint') or 'scratch'}`",
             "- dev metrics at step {}: {}".format(metrics.get("step", "?"), ", ".join(
                 f"{k} {v:.4f}" for k, v in shown.items()) or "none recorded"),
             f"- exported {meta['date']} from `{meta['exported_from']}`", "",
             "```python", "import rofjax", f"predict = rofjax.pipeline({meta['family']!r}, 'THIS_FOLDER')",
             "print(predict('李鹏在北京会见了美国客人'))", "```", ""]
    return "\n".join(lines)
