"""Does a deep Post-Norm GAU stack need warmup (kexue.fm 8990)?

Post-Norm stacks of GAU blocks and of attention + FFN blocks, of increasing depth, are pre-trained by masked LM on
the embedded corpus with the library's loop (`configs/pretrain/tiny_mlm.py` at this experiment's sizes), with and
without a linear warmup, from Xavier (Glorot uniform) or the depth-scaled initialisation (kexue.fm 8978: σ =
fan^−1/2 · L^−1/order, order 3 for GAU, 2 for attention). The GAU is the post's: relu²(q kᵀ/√s)/n attention
(`squared_relu`), e = 2d, one head. The post's argument is that at initialisation GAU(x) is about 0.01·x
(s ν⁶ / n with ν² = E[swish(ε)²] ≈ 0.356, for s = 128, n = 512), so every Post-Norm block starts close to the
identity, as DeepNorm would make it, while an attention + FFN block adds a branch about as large as x; so each
run also measures ‖F(x)‖/‖x‖ of every residual branch at initialisation on real evaluation text.

A run diverges when its training loss is not finite (`train.nonfinite="stop"`): it is counted, its loss left out
of the mean. Every (variant, seed) trains in its own folder under `WORKDIR/train/<settings key>/`. The same depth
means the same number of blocks; an attention + FFN block has two residual branches and about twice the weights
of a GAU block (kexue.fm 8934: two GAU layers ≈ one attention + FFN layer).
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

CLAIM = ("A deep Post-Norm GAU stack trains without warmup, even from a plain Xavier initialisation, because at "
         "initialisation each GAU adds only about 1% of its input to the residual stream; a standard attention + "
         "FFN Post-Norm stack of the same depth needs warmup (kexue.fm 8990).")
NU_SQUARED = 0.355776          # E[swish(ε)²], ε ~ N(0, 1) (kexue.fm 8990)
BLOCKS = ("gau", "attention")
INITS = ("xavier", "depth_scaled")


def _list(text, cast=str) -> list:
    return [cast(item) for item in str(text).split(",") if item.strip()]


def grid(settings: dict) -> list[tuple[str, int, str, int]]:
    """(block, layers, init, warmup steps) of every variant, in table order."""
    blocks, inits = _list(settings["blocks"]), _list(settings["inits"])
    for name, allowed, values in (("blocks", BLOCKS, blocks), ("inits", INITS, inits)):
        unknown = sorted(set(values) - set(allowed))
        if unknown or not values:
            raise ValueError(f"{name}={settings[name]!r}: expected a comma-separated subset of {allowed}.")
    warmups = _list(settings["warmup_steps"], int)
    if not warmups or any(w < 0 or w >= settings["steps"] for w in warmups):
        raise ValueError(f"warmup_steps={settings['warmup_steps']!r}: each must be in [0, steps="
                         f"{settings['steps']}).")
    return [(block, layers, init, warmup) for block in blocks for layers in _list(settings["depths"], int)
            for init in inits for warmup in warmups]


def variant_name(block: str, layers: int, init: str, warmup: int) -> str:
    return f"{block}/{layers}L/{init}/" + (f"warmup {warmup}" if warmup else "no warmup")


def training_config(settings: dict, block: str, layers: int, init: str, warmup: int, seed: int):
    """The masked-LM recipe of `configs/pretrain/tiny_mlm.py` at this experiment's sizes, for one variant."""
    from configs.pretrain.tiny_mlm import get_config

    hidden = settings["hidden_size"]
    if block == "gau":
        model = {"model.preset": "gau_alpha_tiny", "model.num_heads": 1, "model.intermediate_size": 2 * hidden,
                 "model.key_size": settings["gau_key_size"],
                 "model.attention_normalization": settings["gau_normalization"]}
    else:
        model = {"model.preset": "roformer_v2_tiny", "model.num_heads": settings["num_heads"],
                 "model.intermediate_size": 4 * hidden, "model.attention_normalization": "softmax"}
    steps = settings["steps"]
    return with_overrides(get_config(), {
        **model, "model.num_layers": layers, "model.hidden_size": hidden, "model.initializer": init,
        "model.norm_position": "post", "model.residual_mode": "plain", "model.scan_layers": True,
        "model.dropout_rate": 0.0, "model.attention_dropout_rate": 0.0,
        "seed": seed, "data.data_dir": settings["data_dir"], "data.max_length": settings["max_length"],
        "train.batch_size": settings["batch_size"], "train.total_steps": steps, "train.nonfinite": "stop",
        "train.log_every": 1, "train.save_every": steps, "train.keep_checkpoints": 1, "train.progress_bar": False,
        "eval.every": 0, "eval.examples": settings["eval_examples"],
        "optim.name": "adamw", "optim.lr": settings["lr"], "optim.warmup_steps": warmup,
        "optim.decay": settings["decay"], "optim.clip_norm": settings["clip_norm"]})


def initial_ratios(config, seed: int, examples: int):
    """‖F(x)‖/‖x‖ of every residual branch of the run's initial parameters (the loop initialises from the first
    half of `key(seed)`) on the first evaluation documents, and the mean 1/n over their tokens."""
    import jax
    from flax import linen as nn

    from rofjax.data.datasets import get_dataset
    from rofjax.training.tasks import build_task

    task = build_task(config)
    records = get_dataset(config.data.dataset).split("validation", config.data.data_dir, config.seed)
    batch = eval_batch(task, records, examples)
    forward = branch_outputs(task.model_config)

    @jax.jit
    def initial(key, batch):
        return forward(nn.unbox(task.init_params(key, task.init_batch(1))), batch)

    init_key, _ = jax.random.split(jax.random.key(seed))
    outputs = initial(init_key, {k: batch[k] for k in ("input_ids", "positions", "doc_ids")})
    lengths = np.asarray(batch["doc_ids"] > 0).sum(axis=1)
    # One document per row: 1/n averaged over tokens is rows / tokens.
    return branch_ratios(task.model_config, outputs, batch["doc_ids"]), float(len(lengths) / lengths.sum())


def train_variant(settings: dict, block: str, layers: int, init: str, warmup: int, folder: str, measured: dict):
    """seed → (metrics, curves) of one variant; `measured` keeps the initial ratios of (block, layers, init, seed),
    which warmup does not change."""

    def run(seed: int):
        config = training_config(settings, block, layers, init, warmup, seed)
        if (block, layers, init, seed) not in measured:
            measured[(block, layers, init, seed)] = initial_ratios(config, seed, settings["ratio_examples"])
        ratios, inverse_n = measured[(block, layers, init, seed)]
        got = train(config, os.path.join(folder, f"seed{seed}"))
        curve = got["curve"]
        tail = [value for _, value in curve[-max(1, len(curve) // 10):]]
        diverged = got["diverged_at"] is not None
        metrics = {"final_loss": math.nan if diverged else got["result"]["loss"],
                   "final_accuracy": math.nan if diverged else got["result"]["accuracy"],
                   "train_loss_end": math.nan if diverged or not tail else float(np.mean(tail)),
                   "diverged": float(diverged), "diverged_at": got["diverged_at"] if diverged else math.nan,
                   "initial_ratio": float(np.mean(ratios)), "initial_ratio_first": float(ratios[0]),
                   "inverse_n": inverse_n, "seconds": got["seconds"]}
        return metrics, {"loss": window_means(curve, settings["curve_every"]), "initial_ratios": [
            [index + 1, float(r)] for index, r in enumerate(ratios)]}

    return run


def _loss_cell(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    return format_mean_std(finite) if finite else "—"


def _slug(name: str) -> str:
    return name.replace("/", "_").replace(" ", "_")


def run(config, workdir: str, log=print) -> str:
    settings = resolved_settings(config)
    variants = grid(settings)
    seeds = range(settings["seeds"])
    runs = Runs(workdir, settings)
    root = os.path.join(workdir, "train", runs.key)
    results, rows, measured = {}, [], {}
    with compilation_cache(os.path.join(workdir, "compile_cache") if settings["compile_cache"] else None):
        for variant in variants:
            name = variant_name(*variant)
            got = runs.run(name, seeds, dict(zip(("block", "layers", "init", "warmup_steps"), variant)),
                           train_variant(settings, *variant, os.path.join(root, _slug(name)), measured), log)
            results[variant] = got
            rows += got

    def values(variant, metric):
        return [row["metrics"][metric] for row in results[variant]]

    n_seeds = settings["seeds"]
    table = markdown_table(
        ["block", "layers", "init", "warmup", "‖F(x)‖/‖x‖ at init (mean over branches)",
         f"final MLM loss (held-out, step {settings['steps']})", "diverged (seeds)"],
        [[block, layers, init, f"{warmup} steps" if warmup else "none",
          f"{np.mean(values(v, 'initial_ratio')):.3g}", _loss_cell(values(v, "final_loss")),
          f"{int(sum(values(v, 'diverged')))}/{n_seeds}"]
         for v in variants for block, layers, init, warmup in [v]])
    findings = _findings(settings, variants, values)
    figure = "gau_warmup_loss.png"
    _plot(os.path.join(workdir, figure), settings, variants, results)
    return write_results(
        workdir, title="Post-Norm GAU without warmup (kexue.fm 8990)", claim=CLAIM, settings=settings,
        sections=[("Masked-LM pre-training, Post-Norm (mean ± std over the seeds that did not diverge)", table)],
        findings=findings,
        figures=[(figure, f"Training MLM loss (means over windows of {settings['curve_every']} steps; one line per "
                          f"seed, × where a seed's loss stopped being finite), per block and depth.")],
        rows=rows)


def _findings(settings: dict, variants, values) -> list[str]:
    findings = []
    warmups = sorted({v[3] for v in variants})
    blocks = list(dict.fromkeys(v[0] for v in variants))
    inits = list(dict.fromkeys(v[2] for v in variants))
    depths = sorted({v[1] for v in variants})
    n = settings["seeds"]

    def summary(variant) -> tuple[float, int]:
        finite = [x for x in values(variant, "final_loss") if math.isfinite(x)]
        return (float(np.mean(finite)) if finite else math.nan), int(sum(values(variant, "diverged")))

    if "gau" in blocks:
        inverse_n = float(np.mean(values(next(v for v in variants if v[0] == "gau"), "inverse_n")))
        estimate = settings["gau_key_size"] * NU_SQUARED ** 3 * inverse_n
        findings.append(f"The post's estimate of ‖GAU(x)‖/‖x‖ at initialisation, s·ν⁶/n for LeCun-initialised "
                        f"weights, is {estimate:.3g} here (s = {settings['gau_key_size']}, mean 1/n over the "
                        f"measured tokens {inverse_n:.3g}).")
        for init in inits:
            ratios = {layers: float(np.mean(values(("gau", layers, init, warmups[0]), "initial_ratio")))
                      for layers in depths}
            findings.append(f"GAU, {init} init: ‖GAU(x)‖/‖x‖ at initialisation, mean over layers, "
                            + ", ".join(f"{layers} layers {r:.3g}" for layers, r in ratios.items()) + ".")
    if "attention" in blocks:
        for init in inits:
            ratios = {layers: float(np.mean(values(("attention", layers, init, warmups[0]), "initial_ratio")))
                      for layers in depths}
            findings.append(f"Attention + FFN, {init} init: ‖F(x)‖/‖x‖ at initialisation, mean over branches, "
                            + ", ".join(f"{layers} layers {r:.3g}" for layers, r in ratios.items()) + ".")
    if warmups[0] != 0 or len(warmups) < 2:
        findings.append("No comparison with and without warmup: warmup_steps needs 0 and a positive value.")
        return findings
    warm = warmups[-1]
    gaps = {}
    for block in blocks:
        for init in inits:
            parts = []
            for layers in depths:
                cold, hot = (block, layers, init, 0), (block, layers, init, warm)
                (cold_loss, cold_div), (hot_loss, hot_div) = summary(cold), summary(hot)
                spread = max([mean_std(f)[1] for f in (_finite(values(cold, "final_loss")),
                                                       _finite(values(hot, "final_loss"))) if f] or [0.0])
                gaps[(block, init, layers)] = (cold_loss - hot_loss, cold_div, spread)
                parts.append(f"{layers} layers: {_num(cold_loss)} vs {_num(hot_loss)} (diverged {cold_div}/{n} vs "
                             f"{hot_div}/{n})")
            findings.append(f"{block}, {init} init, final MLM loss without vs with {warm} warmup steps: "
                            + "; ".join(parts) + ".")
    deepest = depths[-1]
    for init in inits:
        if ("gau", init, deepest) not in gaps or ("attention", init, deepest) not in gaps:
            continue
        (gau_gap, gau_div, gau_spread), (att_gap, att_div, att_spread) = gaps[("gau", init, deepest)], \
            gaps[("attention", init, deepest)]
        spread = max(gau_spread, att_spread)
        if gau_div != att_div:
            verdict = (f"without warmup {'fewer' if gau_div < att_div else 'more'} GAU seeds diverged than "
                       f"attention seeds")
        elif not (math.isfinite(gau_gap) and math.isfinite(att_gap)):
            verdict = "no loss comparison is possible (every seed of a run diverged)"
        elif n < 2:
            verdict = (f"{'smaller' if gau_gap < att_gap else 'not smaller'} for GAU, from one seed (no spread to "
                       f"judge the difference against)")
        elif abs(gau_gap - att_gap) <= spread:
            verdict = f"the same for both within the seed spread ({spread:.3f})"
        else:
            verdict = (f"{'smaller' if gau_gap < att_gap else 'larger'} for GAU than for attention, beyond the "
                       f"seed spread ({spread:.3f})")
        findings.append(
            f"Cost of dropping warmup at {deepest} layers, {init} init (no-warmup loss − warmup loss): GAU "
            f"{_num(gau_gap, signed=True)} ({gau_div}/{n} diverged), attention {_num(att_gap, signed=True)} "
            f"({att_div}/{n} diverged): {verdict}.")
    findings.append(f"{n} seed(s) per variant, {settings['steps']} AdamW steps at peak lr {settings['lr']:g} "
                    f"({settings['decay']} decay, gradient clipping {settings['clip_norm'] or 'off'}), width "
                    f"{settings['hidden_size']}, {settings['max_length']} tokens per row, batch "
                    f"{settings['batch_size']}; loss on the first {settings['eval_examples']} held-out documents.")
    return findings


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _num(value: float, signed: bool = False) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _plot(path: str, settings: dict, variants, results) -> None:
    import matplotlib

    blocks = list(dict.fromkeys(v[0] for v in variants))
    depths = sorted({v[1] for v in variants})
    figure, axes = file_figure(len(blocks), len(depths), figsize=(4.2 * len(depths), 3.4 * len(blocks)),
                               squeeze=False, sharey=True)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    finite_values = [value for rows in results.values() for row in rows for _, value in row["curves"]["loss"]
                     if math.isfinite(value)]
    for (row, block), (column, layers) in ((r, c) for r in enumerate(blocks) for c in enumerate(depths)):
        axis = axes[row][column]
        for index, variant in enumerate(v for v in variants if v[:2] == (block, layers)):
            colour = colours[index % len(colours)]
            for seed, got in enumerate(results[variant]):
                curve = np.asarray(got["curves"]["loss"], dtype=float).reshape(-1, 2)
                if not len(curve):
                    continue
                axis.plot(curve[:, 0], curve[:, 1], color=colour, lw=1.1, alpha=0.85,
                          label=None if seed else f"{variant[2]}, " + (f"warmup {variant[3]}" if variant[3] else
                                                                       "no warmup"))
                if got["metrics"]["diverged"]:
                    axis.plot(curve[-1, 0], curve[-1, 1], "x", color=colour, ms=9, mew=2)
        axis.set_title(f"{block}, {layers} layers, Post-Norm", fontsize=9)
        axis.set_xlabel("training step")
        axis.grid(alpha=0.3)
        if column == 0:
            axis.set_ylabel("MLM loss")
        axis.legend(fontsize=6)
    if finite_values:
        low, high = np.percentile(finite_values, [0.5, 99.5])
        axes[0][0].set_ylim(low - 0.1, high + 0.1)
    figure.tight_layout()
    figure.savefig(path, dpi=100)

