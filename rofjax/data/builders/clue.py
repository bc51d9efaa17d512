"""tfds builder for the 11 CLUE tasks, read from the user's folder (`manual_dir`); no download.

    builder = Clue(config="tnews", data_dir=OUT, file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=CLUE_TNEWS_FOLDER))
    builder.as_data_source(split="validation")

Splits: train, validation and, when the folder has it, test (labels -1). The records are those of
`rofjax.data.readers.clue`; its readers' checks run while building, so a malformed line fails the build naming its
file and line and leaves no dataset behind, as does a present split file without a single record. `prepare_clue`
keys the output folder on the input files' names, sizes and modification times, so an edited file is rebuilt and
two folders of one task never mix.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow_datasets as tfds

from rofjax.data.builders.local import PreparedHere, build_once, empty_split
from rofjax.data.readers import clue

_TEXT = tfds.features.Text()
FEATURES = {
    "classification": {"id": _TEXT, "text": _TEXT, "pair": _TEXT, "label": np.int64},
    "cmrc2018": {"id": _TEXT, "context": _TEXT, "question": _TEXT, "answers": tfds.features.Sequence(_TEXT),
                 "answer_starts": tfds.features.Sequence(np.int64)},
    "c3": {"id": _TEXT, "passage": _TEXT, "question": _TEXT, "choices": tfds.features.Sequence(_TEXT),
           "label": np.int64},
    "chid": {"id": _TEXT, "passage": np.int64, "left": _TEXT, "right": _TEXT,
             "candidates": tfds.features.Sequence(_TEXT), "label": np.int64},
    "cluener": {"id": _TEXT, "text": _TEXT, "entity_types": tfds.features.Sequence(_TEXT),
                "entity_starts": tfds.features.Sequence(np.int64), "entity_ends": tfds.features.Sequence(np.int64)},
}


class Clue(PreparedHere, tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "The 11 CLUE tasks of the RoFormerV2 / GAU-α tables, from local files."}
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=task, description=f"CLUE {task}") for task in clue.TASKS]
    MANUAL_DOWNLOAD_INSTRUCTIONS = ("Download the CLUE task's files from the CLUE benchmark and pass their folder as "
                                    "manual_dir (config.data.data_dir).")

    def _info(self) -> tfds.core.DatasetInfo:
        kind = clue.KINDS[self.builder_config.name]
        # File order is kept: submissions list the test examples in the order the file gives them.
        return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(FEATURES[kind]),
                                              description=f"CLUE {self.builder_config.name} ({kind}).",
                                              disable_shuffling=True)

    def _split_generators(self, dl_manager):
        task = self.builder_config.name
        files = clue.require_folder(task, os.fspath(dl_manager.manual_dir))
        return {split: self._generate_examples(split, paths) for split, paths in files.items()}

    def _generate_examples(self, split, paths):
        task = self.builder_config.name
        count = 0
        for count, record in enumerate(clue.read_split(task, paths), start=1):
            yield count - 1, _to_features(clue.KINDS[task], record)
        if not count:
            # tfds would stop on an AssertionError that names neither the split's files nor what is wrong with them.
            raise empty_split(", ".join(paths), split)


def _to_features(kind: str, record: dict) -> dict:
    if kind == "cluener":
        entities = record["entities"] or []
        return {"id": json.dumps(record["id"], ensure_ascii=False), "text": record["text"], "entity_types": [e[0] for e in entities],
                "entity_starts": [e[1] for e in entities], "entity_ends": [e[2] for e in entities]}
    return {key: record[key] for key in FEATURES[kind]}


def prepare_clue(task: str, folder: str, cache_dir: str | None = None):
    """Build (once per version of the files) and return the tfds builder of `task` from `folder`."""
    clue.require_folder(task, folder)
    inputs = [path for split in ("train", "validation", "test") for path in clue.split_files(task, folder, split) or ()]

    def build(output: str):
        builder = Clue(config=task, data_dir=output, file_format="array_record")
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=os.path.abspath(folder)))
        return builder

    return build_once(f"clue_{task}", inputs, build, cache_dir)


def decode_record(kind: str, raw: dict) -> dict:
    """A record read back from the array_record source as the readers wrote it (str, int, lists)."""

    def text(value):
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    def texts(values):
        return [text(v) for v in np.asarray(values).reshape(-1)] if len(values) else []

    if kind == "cluener":
        entities = sorted(zip(texts(raw["entity_types"]), (int(s) for s in raw["entity_starts"]),
                              (int(e) for e in raw["entity_ends"])))
        return {"id": json.loads(text(raw["id"])), "text": text(raw["text"]), "entities": entities}
    out = {}
    for key, feature in FEATURES[kind].items():
        value = raw[key]
        if isinstance(feature, tfds.features.Sequence):
            out[key] = texts(value) if key in ("answers", "choices", "candidates") else [int(v) for v in value]
        elif feature is np.int64:
            out[key] = int(value)
        else:
            out[key] = text(value)
    return out
