"""Raw text in, plain Python out: `rofjax.pipeline(task, model)` (defined here, exported by `rofjax`).

    import rofjax
    ner = rofjax.pipeline("ner", "exported/ner")          # an exported folder, a run folder or a hub id
    ner("李鹏在北京会见了美国客人")
    # [{'type': 'nr', 'text': '李鹏', 'start': 0, 'end': 2, 'score': 3.1}, {'type': 'ns', 'text': '北京', ...}]
    ner(["第一句", "第二句"])                                 # a list in, a list of lists out

| task | one text gives |
| --- | --- |
| `ner` | `[{"type", "text", "start", "end", "score"}]` (character offsets, end exclusive; score: the span's logit) |
| `classification` | `{"label", "score", "scores"}` (softmax probabilities); a text pair as a `(text, pair)` tuple |
| `relations` | `[{"subject", "predicate", "object"}]` |
| `events` | `[{"type", "trigger", "trigger_start", "arguments": [{"role", "text", "start", "end"}]}]` (trigger None when the event's clique has none) |

Texts longer than the model's window are read in overlapping windows, as in evaluation. Each window goes into the
batch of its length bucket (the next power of two, at least 16, at most the model's `max_length`), so each bucket
is compiled once and a text's result does not depend on the texts beside it; decoding runs on the host with numpy.

A `model` may be a bucket URL (gs://, s3://; read through `etils.epath` into a local cache). Any other `model`
that is not a local folder is taken as a Hugging Face hub id and fetched with `huggingface_hub`
(`snapshot_download`, cached), which must then be installed; the folder it brings is an exported model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from rofjax.export import ExportError, LoadedModel, load

FAMILIES = {"ner": "ner", "classification": "classification", "relations": "relations", "events": "events"}
MIN_BUCKET = 16


def resolve_model(model: str | os.PathLike) -> str:
    """A local folder as it is; a bucket URL (gs://, s3://, …) as a checked local copy (`readable_path`); anything
    else as a Hugging Face hub id, downloaded (and cached) by huggingface_hub."""
    from rofjax.checkpoint.run import is_remote, readable_path

    path = os.fspath(model)
    if path.startswith("file://") or os.path.isdir(path):
        return path
    if is_remote(path):
        return readable_path(path, "model folder")
    if os.path.exists(path) or path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise ExportError(f"{path}: no such model folder (and not a hub id of the form owner/name).")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as error:
        raise ExportError(f"{path} is not a local folder; fetching it from the hub needs huggingface_hub "
                          f"(pip install huggingface_hub).") from error
    try:
        return snapshot_download(repo_id=path)
    except Exception as error:        # huggingface_hub's own: offline and not cached, no such repository, no access
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ExportError(f"{path}: not a local folder, and the Hugging Face hub could not give it "
                          f"({type(error).__name__}: {first[:300]}).") from None


def pipeline(task: str, model: str | os.PathLike | LoadedModel, *, batch_size: int = 16,
             checkpoint: str | None = None) -> Pipeline:
    """The predictor of `task` ("ner", "classification", "relations", "events") for `model`."""
    if task not in FAMILIES:
        raise ValueError(f"pipeline task {task!r}; expected one of {sorted(FAMILIES)}.")
    loaded = model if isinstance(model, LoadedModel) else load(resolve_model(model), checkpoint=checkpoint)
    if loaded.family != FAMILIES[task]:
        raise ValueError(f"{loaded.info.get('source')} is a {loaded.family!r} model (config.task="
                         f"{loaded.info.get('task')!r}); it cannot run the {task!r} pipeline.")
    return Pipeline(task, loaded, batch_size)


class Pipeline:
    """Callable on a string (→ that text's result) or a list of strings (→ a list of results)."""

    def __init__(self, task: str, loaded: LoadedModel, batch_size: int):
        import jax

        self.task_name, self.loaded, self.batch_size = task, loaded, batch_size
        self.task = loaded.task
        self.params = jax.device_put(loaded.params)
        self._predict = jax.jit(self.task.predict)
        labels = loaded.info.get("labels")
        self.label_names = [str(x) for x in labels] if isinstance(labels, list) else None

    def __repr__(self) -> str:
        return f"Pipeline({self.task_name!r}, {self.loaded.info.get('source')!r})"

    def __call__(self, inputs):
        pairs = self.task_name == "classification"
        expected = "a string, (text, pair) tuple or a list of them" if pairs else "a string or a list of strings"
        single = isinstance(inputs, str) or (pairs and isinstance(inputs, tuple))
        if not single and not isinstance(inputs, (list, tuple)):
            raise TypeError(f"pipeline input: expected {expected}; got {type(inputs).__name__}.")
        items = [inputs] if single else list(inputs)
        for index, item in enumerate(items):
            good = isinstance(item, str) or (pairs and isinstance(item, tuple) and len(item) == 2
                                             and all(isinstance(text, str) for text in item))
            if not good:
                raise TypeError(f"pipeline input {index}: expected "
                                f"{'a string or a (text, pair) tuple of strings' if pairs else 'a string'}; got "
                                f"{type(item).__name__}" + (f" {item!r}" if isinstance(item, tuple) else "") + ".")
        results = getattr(self, f"_{self.task_name}")(items)
        return results[0] if single else results

    # Batching ---------------------------------------------------------------------------------------------------
    def _bucket(self, longest: int) -> int:
        size = MIN_BUCKET
        while size < longest:
            size *= 2
        return min(size, self.task.max_length)

    def _windows(self, texts: Sequence[str]):
        """`(pieces, batch)` over every window of every text, each window batched in its own length bucket, so a
        text's result does not depend on its neighbours."""
        from rofjax.training.tasks.text_spans import windowed_batches

        return windowed_batches(self.task.tokenizer, [{"text": t} for t in texts], self.task.max_length,
                                self.batch_size, getattr(self.task, "window_stride", None), bucket=self._bucket)

    # Tasks ------------------------------------------------------------------------------------------------------
    def _ner(self, texts: Sequence[str]) -> list[list[dict]]:
        from rofjax.decode.spans import extract_spans_batch
        from rofjax.training.tasks.base import fetched_one_behind

        best: list[dict[tuple, float]] = [{} for _ in texts]
        dispatched = ((self._predict(self.params, batch), chunk) for chunk, batch in self._windows(texts))
        for logits, chunk in fetched_one_behind(dispatched):
            logits = np.asarray(logits)[: len(chunk)]
            decoded = extract_spans_batch(logits, [len(p[1]) for p in chunk], threshold=self.task.threshold,
                                          labels=self.task.types, with_scores=True)
            for (index, _, offsets), spans in zip(chunk, decoded):
                for kind, h, t, score in spans:
                    key = (kind, offsets[h][0], offsets[t][1])
                    best[index][key] = max(score, best[index].get(key, -np.inf))
        return [[{"type": kind, "text": text[start:end], "start": start, "end": end, "score": round(score, 4)}
                 for (kind, start, end), score in sorted(found.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0]))]
                for text, found in zip(texts, best)]

    def _classification(self, items) -> list[dict]:
        import jax
        import jax.numpy as jnp

        from rofjax.training.tasks.base import fetched_one_behind

        task = self.task
        if not task.pair_key and any(isinstance(item, tuple) for item in items):
            index = next(i for i, item in enumerate(items) if isinstance(item, tuple))
            raise ValueError(f"pipeline input {index} is a (text, pair) tuple, but {self.loaded.info.get('source')} "
                             f"classifies single texts (it was trained without config.data.pair_key); pass strings.")
        records = [{task.text_key: item[0], **({task.pair_key: item[1]} if task.pair_key else {})}
                   if isinstance(item, tuple) else {task.text_key: item, **({task.pair_key: ""} if task.pair_key
                                                                            else {})}
                   for item in items]
        if not hasattr(self, "_probabilities"):          # compiled once per pipeline, not once per call
            self._probabilities = jax.jit(lambda p, b: jax.nn.softmax(task._logits(p, b).astype(jnp.float32), -1))
        probabilities = self._probabilities

        def dispatched():
            for start in range(0, len(records), self.batch_size):
                chunk = [task._inputs(r) for r in records[start:start + self.batch_size]]
                rows = chunk + [chunk[0]] * (self.batch_size - len(chunk))
                batch = {k: np.stack([r[k] for r in rows]) for k in ("input_ids", "segment_ids")}
                yield probabilities(self.params, batch), len(chunk)

        out = []
        for result, rows in fetched_one_behind(dispatched()):
            out.extend(np.asarray(result)[:rows])
        names = self.label_names or [str(i) for i in range(task.num_labels)]
        return [{"label": names[int(np.argmax(p))], "score": round(float(np.max(p)), 4),
                 "scores": {name: round(float(x), 4) for name, x in zip(names, p)}} for p in out]

    def _relations(self, texts: Sequence[str]) -> list[list[dict]]:
        found = self.task.decode(self.params, [{"text": t} for t in texts], self.batch_size)
        return [[{"subject": s, "predicate": p, "object": o} for s, p, o in sorted(triples)] for triples in found]

    def _events(self, texts: Sequence[str]) -> list[list[dict]]:
        from rofjax.decode.events import TRIGGER_ROLE

        found = self.task.decode(self.params, [{"text": t} for t in texts], self.batch_size)
        results = []
        for events in found:
            rows = []
            for event in events:
                trigger = next(((text, start) for _, role, text, start in event if role == TRIGGER_ROLE), (None, None))
                rows.append({"type": event[0][0], "trigger": trigger[0], "trigger_start": trigger[1],
                             "arguments": [{"role": role, "text": text, "start": start, "end": start + len(text)}
                                           for _, role, text, start in event if role != TRIGGER_ROLE]})
            results.append(rows)
        return results


def predict_lines(pipe: Pipeline, lines, *, text_key: str = "text", chunk: int = 256):
    """Yield `{"text": ..., "result": ...}` for each non-empty line (plain text, or a JSON object with `text_key`),
    predicted `chunk` lines at a time; a line that cannot be read is an error naming its number."""
    import json

    pending: list[str] = []
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        text = line
        if line.lstrip().startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"line {number}: looks like JSON but does not parse ({error.msg}).") from None
            if not isinstance(record, dict) or not isinstance(record.get(text_key), str):
                raise ValueError(f"line {number}: a JSON line needs a string {text_key!r}.")
            text = record[text_key]
        pending.append(text)
        if len(pending) >= chunk:
            yield from ({"text": t, "result": r} for t, r in zip(pending, pipe(pending)))
            pending = []
    if pending:
        yield from ({"text": t, "result": r} for t, r in zip(pending, pipe(pending)))
