"""GlobalPointer vs Efficient GlobalPointer on People's Daily NER (kexue.fm 8877, 8926).

Both heads sit on the same small RoFormerV2 encoder trained from scratch by the library's own loop
(`rofjax.training.loop.run`, the `configs/ie/peoples_daily_ner.py` recipe with this experiment's sizes), same
steps, same seeds; only `NERTask.efficient` differs. The dev F1 after each evaluation is read back from the run's
`eval_metrics.jsonl`; every (head, seed) trains in its own folder under `WORKDIR/train/<settings key>/`. Runs are
checkpointed only at their end (a SIGTERM also saves), so a run killed midway starts over, the loop dropping what
it had logged; finished runs are kept in `runs.jsonl` and not repeated.

The posts' setting is BERT-base (D = 768, d = 64), 10 epochs; ours is a 2-layer encoder trained for minutes, so
what is tested is the shape of the claim (who is ahead early, who ends ahead, at what head size), not its numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

import numpy as np

from rofjax.experiments.report import (
    Runs,
    format_mean_std,
    markdown_table,
    mean_std,
    plot_curves,
    resolved_settings,
    write_results,
)
from rofjax.experiments.training_runs import read_curve

DATASET = "peoples_daily_ner"
TYPES = ("PER", "LOC", "ORG")
# Variant name → NERTask.efficient.
VARIANTS = {"GlobalPointer": False, "Efficient GlobalPointer": True}
CLAIM = ("On People's Daily NER, GlobalPointer converges faster early in training, while Efficient GlobalPointer — "
         "a shared span extractor plus a per-type bias, 2Dd + 4dh instead of 2Ddh head weights — ends equal or "
         "better with far fewer head parameters (kexue.fm 8877, 8926).")


def head_parameters(efficient: bool, hidden_size: int, heads: int, head_size: int) -> int:
    """Weights of the span head alone (the encoder is shared by both variants), counted from the library's
    modules: GlobalPointer D·2dh + 2dh, Efficient GlobalPointer D·2d + 2d + 2d·2h + 2h."""
    import jax
    import jax.numpy as jnp

    from rofjax.nn.global_pointer import EfficientGlobalPointer, GlobalPointer

    pointer = (EfficientGlobalPointer if efficient else GlobalPointer)(heads=heads, head_size=head_size)
    shapes = jax.eval_shape(pointer.init, jax.random.key(0), jnp.zeros((1, 4, hidden_size), jnp.float32))
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes)))


@contextlib.contextmanager
def dataset_for(efficient: bool):
    """The name of a copy of People's Daily NER whose `ner` task builds the wanted head (`NERTask.efficient` set
    explicitly, whatever the registered default), registered for the length of one run."""
    from rofjax.data.datasets import DATASETS, get_dataset, register

    spec = get_dataset(DATASET)
    family, options = spec.task_for("ner")
    name = f"{DATASET}_{'efficient_' if efficient else ''}global_pointer"
    register(dataclasses.replace(spec, name=name, tasks={"ner": (family, {**options, "efficient": efficient})}),
             replace=True)
    try:
        yield name
    finally:
        DATASETS.pop(name, None)


def training_config(settings: dict, dataset: str, seed: int):
    """The People's Daily NER recipe at this experiment's sizes, steps and evaluation schedule."""
    from configs.ie.peoples_daily_ner import get_config

    c = get_config()
    c.seed = seed
    c.data.dataset = dataset
    c.data.max_length = settings["max_length"]
    c.data.head_size = settings["head_size"]
    for key in ("num_layers", "hidden_size", "num_heads", "intermediate_size"):
        c.model[key] = settings[key]
    c.train.batch_size = settings["batch_size"]
    c.train.total_steps = settings["steps"]
    c.optim.lr = settings["lr"]
    c.optim.warmup_steps = settings["warmup_steps"]
    c.eval.every = settings["eval_every"]
    c.eval.examples = settings["eval_examples"]
    # One checkpoint at the end (resumption), logs only at evaluations: the loop's extras cost little then.
    c.train.save_every = settings["steps"]
    c.train.keep_checkpoints = 1
    c.train.log_every = settings["eval_every"]
    c.train.progress_bar = False
    return c


def eval_curve(path: str, metric: str = "f1") -> list[list[float]]:
    """`[[step, metric], ...]` from a run's eval_metrics.jsonl, the last row of each step (a resumed run may log
    a step twice), in step order."""
    return read_curve(path, metric)


def value_at(curve: list[list[float]], step: int) -> float:
    """The curve's value at the first evaluation at or after `step`."""
    for at, value in curve:
        if at >= step:
            return value
    return float("nan")


def train_head(settings: dict, efficient: bool, folder: str):
    """A function seed → (metrics, curves) that trains one head in `folder/seed<k>` with the library's loop."""

    def train_seed(seed: int):
        from rofjax.training.loop import run as train

        started = time.perf_counter()
        with dataset_for(efficient) as dataset:
            config = training_config(settings, dataset, seed)
            run_dir = os.path.join(folder, f"seed{seed}")
            result = train(config, run_dir)
        curve = eval_curve(os.path.join(run_dir, "eval_metrics.jsonl"))
        if not curve or curve[-1][0] != settings["steps"]:
            raise RuntimeError(f"{run_dir}: no evaluation at the last step {settings['steps']} in "
                               f"eval_metrics.jsonl; delete the folder to train the run again.")
        metrics = {"final_f1": curve[-1][1], "early_f1": value_at(curve, settings["early_step"]),
                   "precision": result.get("precision", float("nan")), "recall": result.get("recall", float("nan")),
                   "head_parameters": head_parameters(efficient, settings["hidden_size"], len(TYPES),
                                                      settings["head_size"]),
                   "seconds": time.perf_counter() - started}
        return metrics, {"f1": curve}

    return train_seed


def _slug(name: str) -> str:
    return name.lower().replace(" ", "_")


def _compare(name_a: str, a: list[float], name_b: str, b: list[float]) -> str:
    """"a ahead of b by x" with how that gap compares with the spread over seeds."""
    (mean_a, std_a), (mean_b, std_b) = mean_std(a), mean_std(b)
    gap = mean_a - mean_b
    if not np.isfinite(gap):
        return "not comparable (a run diverged)"
    leader, trailer = (name_a, name_b) if gap >= 0 else (name_b, name_a)
    said = f"{leader} ahead of {trailer} by {100 * abs(gap):.1f} F1 points"
    if min(len(a), len(b)) < 2:
        return f"{said} (one seed: no spread to compare the gap with)"
    spread = max(std_a, std_b)
    size = "within" if abs(gap) <= spread else "beyond"
    return f"{said} ({size} the larger seed std, {100 * spread:.1f} points)"


def run(config, workdir: str, log=print) -> str:
    settings = resolved_settings(config)
    if settings["early_step"] > settings["steps"]:
        raise ValueError(f"early_step={settings['early_step']} is past the last step {settings['steps']}.")
    seeds = range(settings["seeds"])
    runs = Runs(workdir, settings)
    train_root = os.path.join(workdir, "train", runs.key)
    results, rows = {}, []
    for name, efficient in VARIANTS.items():
        got = runs.run(name, seeds, {"efficient": efficient},
                       train_head(settings, efficient, os.path.join(train_root, _slug(name))), log)
        results[name] = got
        rows += got

    def values(name, metric):
        return [row["metrics"][metric] for row in results[name]]

    early = settings["early_step"]
    table = markdown_table(
        ["head", "head parameters", f"dev F1 at step {early} (%)", f"final dev F1, step {settings['steps']} (%)"],
        [[name, f"{int(values(name, 'head_parameters')[0]):,}", format_mean_std(values(name, "early_f1"), 2, True),
          format_mean_std(values(name, "final_f1"), 2, True)] for name in VARIANTS])
    gp, egp = VARIANTS
    gp_params, egp_params = values(gp, "head_parameters")[0], values(egp, "head_parameters")[0]
    findings = [
        f"Head parameters: {gp} {int(gp_params):,}, {egp} {int(egp_params):,} ({gp_params / egp_params:.1f}× "
        f"fewer for {egp}; {len(TYPES)} entity types, encoder width {settings['hidden_size']}, head size "
        f"{settings['head_size']}).",
        f"Early (step {early}): {_compare(gp, values(gp, 'early_f1'), egp, values(egp, 'early_f1'))}.",
        f"End (step {settings['steps']}): {_compare(gp, values(gp, 'final_f1'), egp, values(egp, 'final_f1'))}.",
        f"Dev F1 on the first {settings['eval_examples'] or 'all'} dev records, {settings['seeds']} seed(s) per "
        f"head; a gap within the seed std is not a difference these runs can resolve."]
    figure = "egp_vs_gp_f1.png"
    plot_curves(os.path.join(workdir, figure), {name: results[name] for name in VARIANTS}, curve="f1",
                xlabel="training step", ylabel="dev entity F1", title="People's Daily NER: GlobalPointer heads",
                ylim=(0, 1.0))
    return write_results(
        workdir, title="Efficient GlobalPointer vs GlobalPointer on People's Daily NER (kexue.fm 8877)",
        claim=CLAIM, settings=settings,
        sections=[("Dev entity F1 (mean ± std over seeds)", table)], findings=findings,
        figures=[(figure, f"Dev entity F1 vs step, mean over {settings['seeds']} seed(s), band ± 1 std.")],
        rows=rows)
