"""Experiments made of the library's own training runs (`rofjax.training.loop.run`): one config with overrides per
run, each in its own folder, a divergence recorded instead of raised, the loss curve read back from
`metrics.jsonl`; and the size of every residual branch relative to the stream it is added to.

Every run builds a fresh trainer, so on a CPU most of a short run is XLA compiling the same programs again (the
step of every seed, the evaluation of every variant). `compilation_cache` keeps compiled programs on disk for the
length of an experiment, so that a program is compiled once per distinct computation.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

import numpy as np


@contextlib.contextmanager
def compilation_cache(path: str | None):
    """JAX's persistent compilation cache in `path` while the block runs (nothing when `path` is falsy, or when
    the process has a cache of its own already); the process's setting comes back afterwards."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cache

    previous = jax.config.jax_compilation_cache_dir
    if not path or previous:
        yield
        return
    os.makedirs(path, exist_ok=True)
    # The cache is bound once per process at its first compile: reset it so that the new folder takes effect.
    jax.config.update("jax_compilation_cache_dir", path)
    cache.reset_cache()
    try:
        yield
    finally:
        jax.config.update("jax_compilation_cache_dir", previous)
        cache.reset_cache()


def with_overrides(config, overrides: dict):
    """An unlocked copy of `config` with `{"section.key": value}` set (a key that does not exist is an error)."""
    config = config.copy_and_resolve_references()
    config.unlock()
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        target = config
        for parent in parents:
            target = target[parent]
        if leaf not in target:
            raise KeyError(f"config has no key {dotted!r}")
        target[leaf] = value
    return config


def read_curve(path: str, metric: str = "loss") -> list[list[float]]:
    """`[[step, value], ...]` of a metrics file, in step order; the last row of a step wins (a restarted run logs
    its steps again) and a missing value reads as NaN."""
    by_step: dict[int, float] = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    value = row.get(metric)
                    by_step[int(row["step"])] = float("nan") if value is None else float(value)
    return [[step, by_step[step]] for step in sorted(by_step)]


def window_means(curve: list[list[float]], every: int) -> list[list[float]]:
    """The curve averaged over consecutive windows of `every` steps, each labelled by its last step (a per-step
    training loss is too noisy to plot as it is)."""
    out = []
    for start in range(0, len(curve), max(1, every)):
        window = curve[start:start + max(1, every)]
        out.append([window[-1][0], float(np.mean([value for _, value in window]))])
    return out


def train(config, run_dir: str) -> dict:
    """One run of the training loop in `run_dir` (its printed progress goes to `run_dir/train.log`).

    Returns `result` (the final evaluation; {} when the run diverged), `diverged_at` (the step whose loss was not
    finite, or None), `curve` (the training loss per logged step) and `seconds`. `config.train.nonfinite` must be
    "stop": the first non-finite loss ends the run, and that is what counts as diverging here."""
    from rofjax.training.loop import NonFiniteLossError, run

    if config.train.nonfinite != "stop":
        raise ValueError("a run that counts divergences needs config.train.nonfinite='stop' (a skipped update would "
                         "hide the divergence)")
    os.makedirs(run_dir, exist_ok=True)
    started, diverged_at, result = time.perf_counter(), None, {}
    with open(os.path.join(run_dir, "train.log"), "a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        try:
            result = run(config, run_dir)
        except NonFiniteLossError as error:
            print(f"diverged: {error}")
            curve = read_curve(os.path.join(run_dir, "metrics.jsonl"))
            diverged_at = (curve[-1][0] + 1) if curve else 1
    return {"result": result, "diverged_at": diverged_at, "seconds": time.perf_counter() - started,
            "curve": read_curve(os.path.join(run_dir, "metrics.jsonl"))}


def eval_batch(task, records, size: int) -> dict:
    """The first `size` evaluation examples of a masked-LM task, stacked (unpacked rows, fixed masks)."""
    examples = [task.eval_example(index, records[index]) for index in range(min(size, len(records)))]
    return {key: np.stack([example[key] for example in examples]) for key in examples[0]}


def branch_outputs(model_config):
    """A function (params, batch) → (embeddings output, {branch: F(x) of every layer}, {branch: its norm's
    output of every layer}) of an encoder with scanned layers (its outputs stacked over layers); `batch` holds
    `input_ids`, `positions` and `doc_ids` (one document per row, 0 = padding)."""
    from rofjax.models.encoder import Encoder

    if not model_config.scan_layers:
        raise ValueError("branch_outputs reads the stacked outputs of scanned layers; set scan_layers=True")
    names = branch_names(model_config)
    wanted = {"embeddings", *names, *(f"{name}_norm" for name in names)}
    model = Encoder(model_config)

    def outputs(params, batch):
        _, state = model.apply({"params": params}, batch["input_ids"], positions=batch["positions"],
                               attention_mask=batch["doc_ids"] > 0, mutable=["intermediates"],
                               capture_intermediates=lambda module, method: method == "__call__"
                               and module.name in wanted)
        found = state["intermediates"]
        layers = found["transformer"]["layers"]
        return (found["embeddings"]["__call__"][0], {name: layers[name]["__call__"][0] for name in names},
                {name: layers[f"{name}_norm"]["__call__"][0] for name in names})

    return outputs


def branch_names(model_config) -> tuple[str, ...]:
    return ("attention", "feedforward") if model_config.block_type == "attention" else ("gau",)


def branch_ratios(model_config, outputs, doc_ids) -> np.ndarray:
    """‖F(x)‖ / ‖x‖ of every residual branch, in order (attention blocks: attention then feed-forward of each
    layer; GAU blocks: one per layer), over the real tokens (`doc_ids > 0`); x is the stream the branch is added
    to, `outputs` what `branch_outputs` returns.

    Post-Norm: x is the previous norm's output (the embeddings' for the first branch), x_{k+1} = Norm(x_k + F_k).
    Pre-Norm: x is the sum of the embeddings and every earlier branch, x_{k+1} = x_k + F_k(Norm(x_k)); the branch
    reads Norm(x_k), but what it changes is x_k."""
    stream, branches, norms = (np.asarray(x, np.float64) if not isinstance(x, dict) else
                               {k: np.asarray(v, np.float64) for k, v in x.items()} for x in outputs)
    weights = (np.asarray(doc_ids) > 0)[..., None]

    def size(x):
        return float(np.sqrt(np.sum(np.square(x) * weights)))

    ratios = []
    for layer in range(model_config.num_layers):
        for name in branch_names(model_config):
            branch = branches[name][layer]
            ratios.append(size(branch) / max(size(stream), 1e-30))
            stream = stream + branch if model_config.norm_position == "pre" else norms[name][layer]
    return np.asarray(ratios)

