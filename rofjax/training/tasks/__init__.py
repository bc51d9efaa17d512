"""Training tasks: what a batch holds, which model reads it, its loss and its evaluation metrics.

A task provides `model`, `encode(record) -> example` (host side, numpy), `init_batch(batch_size)`,
`loss(params, batch, rng, step)` and `eval_sums(params, batch)`/`summarize(sums)`.
"""

from rofjax.training.tasks.classification import ClassificationTask
from rofjax.training.tasks.events import EventTask
from rofjax.training.tasks.mlm import MaskedLMTask
from rofjax.training.tasks.ner import NERTask
from rofjax.training.tasks.relations import RelationTask

TASKS = {"classification": ClassificationTask, "mlm": MaskedLMTask, "events": EventTask, "ner": NERTask, "relations": RelationTask}

__all__ = ["TASKS", "ClassificationTask", "EventTask", "MaskedLMTask", "NERTask", "RelationTask"]
