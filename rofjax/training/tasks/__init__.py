"""Training tasks: what a batch holds, which model reads it, its loss, its evaluation and its decoding.

Every task implements the `Task` interface of `rofjax.training.tasks.base`. `TASKS` names the task families a
dataset can feed (`DatasetSpec.tasks` maps a `config.task` value to one of them); `build_task(config)` makes the
task of a training config: the dataset's spec, the vocabulary, the model preset with its overrides, the family.
"""

from __future__ import annotations

import logging

from rofjax.training.tasks.base import Task
from rofjax.training.tasks.classification import ClassificationTask
from rofjax.training.tasks.clue import ChidTask, MultipleChoiceTask, ReadingComprehensionTask
from rofjax.training.tasks.events import EventTask
from rofjax.training.tasks.mlm import MaskedLMTask
from rofjax.training.tasks.ner import NERTask
from rofjax.training.tasks.relations import RelationTask

log = logging.getLogger(__name__)

TASKS: dict[str, type[Task]] = {
    "classification": ClassificationTask,
    "multiple_choice": MultipleChoiceTask,
    "chid": ChidTask,
    "reading_comprehension": ReadingComprehensionTask,
    "mlm": MaskedLMTask,
    "ner": NERTask,
    "relations": RelationTask,
    "events": EventTask,
}


def build_tokenizer(config):
    from rofjax.data.tokenizer import Tokenizer
    from rofjax.data.vocab import EMBEDDED_VOCAB

    data = config.data
    tokenizer = Tokenizer(data.vocab_path or EMBEDDED_VOCAB, word_level=data.word_level)
    words = tokenizer.chinese_word_entries
    if words > 1000 and not data.word_level:
        log.warning("%s has %d multi-character Chinese words that character tokenisation never produces; a RoFormer "
                    "v1 word model needs --config.data.word_level=True.", data.vocab_path, words)
    return tokenizer


def build_model_config(config, vocab_size: int, *, shapes_only: bool = False):
    """`config.model.preset` with the config's non-empty overrides; the vocabulary size must match the vocabulary
    unless `shapes_only` (ahead-of-time compilation of a recipe at its published size)."""
    from rofjax.models import get_preset

    overrides = {k: v for k, v in config.model.items() if v is not None and k != "preset"}
    if config.get("lst"):
        overrides["lst"] = config.lst
    overrides.setdefault("vocab_size", vocab_size)
    if overrides["vocab_size"] != vocab_size and not shapes_only:
        raise ValueError(f"config.model.vocab_size={overrides['vocab_size']} but the vocabulary "
                         f"{config.data.vocab_path or 'embedded'} has {vocab_size} tokens.")
    return get_preset(config.model.preset, **overrides)


def build_task(config, *, shapes_only: bool = False) -> Task:
    """The task of `config`: `config.task` on `config.data.dataset` (see `rofjax.data.datasets`)."""
    from rofjax.data.datasets import get_dataset

    spec = get_dataset(config.data.dataset)
    family, options = spec.task_for(config.task)
    tokenizer = build_tokenizer(config)
    model_config = build_model_config(config, tokenizer.vocab_size, shapes_only=shapes_only)
    labels = spec.labels(spec.folder(config.data.data_dir, config.seed))
    return TASKS[family].from_config(config, model_config, tokenizer, labels, **options)


__all__ = ["TASKS", "ChidTask", "ClassificationTask", "EventTask", "MaskedLMTask", "MultipleChoiceTask", "NERTask",
           "ReadingComprehensionTask", "RelationTask", "Task", "build_model_config", "build_task",
           "build_tokenizer"]
