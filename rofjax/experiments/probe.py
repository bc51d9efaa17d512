"""The position probe of kexue.fm 9105: can a relative-position (RoPE) encoder tell its positions apart?

The input is n identical tokens; every token must predict its own index 0 … n−1 (n drawn per example). Under a
row-stochastic attention (Σ_j a_ij = 1: softmax, and softmax_plus, which only rescales the logits) identical
inputs give identical values v_j = v and every output o_i = Σ_j a_ij v = v, so no layer can separate the positions
and accuracy stays at chance. Attention whose rows do not sum to one (no denominator, l2, swish+l2, GAU's relu²/n)
passes position information through the row sums; so do [CLS]/[SEP] around the input, which break the symmetry.
The probe's sizes are ours: the post gives none (seeds-spec §7.6).
"""

from __future__ import annotations

import functools
import time

import numpy as np

from rofjax.experiments.report import (
    Runs,
    format_mean_std,
    markdown_table,
    plot_curves,
    resolved_settings,
    write_results,
)
from rofjax.nn.attention import NORMALIZATIONS

TOKEN, CLS, SEP, PAD = 5, 2, 3, 0
BLOCKS = ("attention", "gau")
CLAIM = ("With identical input tokens, a RoPE Transformer with softmax attention gives every position the same "
         "output, so it cannot map n identical tokens to 1…n; dropping the softmax denominator, l2 (or swish+l2) "
         "normalisation, or feeding [CLS] … [SEP] around the input makes the probe solvable (kexue.fm 9105).")


def probe_batch(rng: np.random.Generator, batch: int, min_length: int, max_length: int, specials: bool):
    """Token ids, labels (the index of each probe token, -1 elsewhere) and the key mask, padded to one shape (the
    same with or without [CLS]/[SEP], so that both share one compiled step)."""
    width = max_length + 2
    ids = np.full((batch, width), PAD, np.int32)
    labels = np.full((batch, width), -1, np.int32)
    lengths = rng.integers(min_length, max_length + 1, size=batch)
    for row, n in enumerate(lengths):
        start = 1 if specials else 0
        ids[row, start:start + n] = TOKEN
        labels[row, start:start + n] = np.arange(n)
        if specials:
            ids[row, 0], ids[row, n + 1] = CLS, SEP
    return ids, labels, ids != PAD


def model_config(block: str, layers: int, normalization: str, settings: dict):
    from rofjax.models.config import family_config

    sizes = dict(vocab_size=8, hidden_size=settings["hidden_size"], num_layers=layers,
                 num_heads=settings["num_heads"], intermediate_size=settings["intermediate_size"],
                 type_vocab_size=0, dropout_rate=0.0, attention_dropout_rate=0.0,
                 attention_normalization=normalization, max_position_embeddings=settings["max_length"] + 2)
    if block == "gau":
        return family_config("gau_alpha", key_size=settings["gau_key_size"], **sizes)
    return family_config("roformer_v2", **sizes)


def probe_network(config, classes: int):
    """An encoder and a per-token classifier over positions 0 … classes−1."""
    import flax.linen as nn

    from rofjax.models.encoder import Encoder

    class ProbeNetwork(nn.Module):
        @nn.compact
        def __call__(self, ids, mask):
            hidden = Encoder(config, name="encoder")(ids, attention_mask=mask)
            return nn.Dense(classes, name="head")(hidden.astype(np.float32))

    return ProbeNetwork()


def train_probe(block: str, layers: int, normalization: str, settings: dict):
    """A function (seed, specials) → (metrics, curves), its train step compiled once for both inputs."""
    import jax
    import jax.numpy as jnp
    import optax

    config = model_config(block, layers, normalization, settings)
    net = probe_network(config, settings["max_length"])
    tx = optax.adam(settings["lr"])

    def loss_fn(params, ids, labels, mask):
        logits = net.apply({"params": params}, ids, mask)
        valid = labels >= 0
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
        correct = (jnp.argmax(logits, -1) == labels) & valid
        return jnp.sum(nll * valid) / jnp.sum(valid), jnp.sum(correct) / jnp.sum(valid)

    @jax.jit
    def step(params, opt_state, ids, labels, mask):
        (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, ids, labels, mask)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, accuracy

    evaluate = jax.jit(loss_fn)
    # Jitted: eagerly, every op of the initialisation compiles on its own.
    init, init_optimizer = jax.jit(net.init), jax.jit(tx.init)

    def run(seed: int, specials: bool):
        rng = np.random.default_rng(seed)
        ids, labels, mask = probe_batch(rng, settings["batch_size"], settings["min_length"], settings["max_length"],
                                        specials)
        params = init(jax.random.key(seed), ids, mask)["params"]
        opt_state = init_optimizer(params)
        held_out = probe_batch(np.random.default_rng(10_000 + seed), settings["eval_size"], settings["min_length"],
                               settings["max_length"], specials)
        curve, started = [], time.perf_counter()
        for index in range(1, settings["steps"] + 1):
            params, opt_state, loss, _ = step(params, opt_state, *probe_batch(
                rng, settings["batch_size"], settings["min_length"], settings["max_length"], specials))
            if index % settings["eval_every"] == 0 or index == settings["steps"]:
                curve.append([index, float(evaluate(params, *held_out)[1])])
        final_loss, accuracy = (float(x) for x in evaluate(params, *held_out))
        return ({"accuracy": accuracy, "loss": final_loss, "seconds": time.perf_counter() - started},
                {"accuracy": curve})

    return run


def chance_accuracy(min_length: int, max_length: int) -> float:
    """Accuracy of predicting one index for every token: the best constant guess per example, 1/n on average
    over tokens (tokens, not examples, are counted)."""
    lengths = np.arange(min_length, max_length + 1)
    return float(len(lengths) / lengths.sum())


def run(config, workdir: str, log=print) -> str:
    settings = resolved_settings(config)
    normalizations = [n for n in settings["normalizations"].split(",") if n]
    blocks = [b for b in settings["blocks"].split(",") if b]
    # Checked before the first run, not when a later one reaches the bad name.
    unknown = [n for n in normalizations if n not in NORMALIZATIONS] + [b for b in blocks if b not in BLOCKS]
    if unknown:
        raise ValueError(f"config.normalizations / config.blocks: {', '.join(map(repr, unknown))} unknown; "
                         f"normalizations are {', '.join(NORMALIZATIONS)}, blocks {', '.join(BLOCKS)}.")
    try:
        depths = [int(d) for d in str(settings["layers"]).split(",") if d]
    except ValueError:
        raise ValueError(f"layers={settings['layers']!r} (config.layers, or config.smoke_settings.layers with "
                         f"smoke); expected comma-separated layer counts, e.g. '1,2'.") from None
    seeds = range(settings["seeds"])
    runs = Runs(workdir, settings)
    results, rows = {}, []
    for block in blocks:
        for layers in depths:
            for normalization in normalizations:
                # Compiled only if some seed is not done yet.
                compiled = functools.lru_cache(None)(functools.partial(train_probe, block, layers, normalization,
                                                                       settings))
                for specials in (False, True):
                    name = f"{block}/{layers}L/{normalization}" + ("+cls_sep" if specials else "")
                    got = runs.run(name, seeds, {"block": block, "layers": layers, "normalization": normalization,
                                                 "specials": specials},
                                   functools.partial(lambda seed, fn, s: fn()(seed, s), fn=compiled, s=specials), log)
                    results[(block, layers, normalization, specials)] = got
                    rows += got
    chance = chance_accuracy(settings["min_length"], settings["max_length"])

    def accuracy(key):
        return [row["metrics"]["accuracy"] for row in results[key]]

    table = markdown_table(
        ["block", "layers", "attention normalisation", "accuracy, n identical tokens (%)",
         "accuracy, [CLS] + tokens + [SEP] (%)"],
        [[block, layers, f"`{normalization}`", format_mean_std(accuracy((block, layers, normalization, False)), 1,
                                                               True),
          format_mean_std(accuracy((block, layers, normalization, True)), 1, True)]
         for block in blocks for layers in depths for normalization in normalizations])
    findings = []
    for block in blocks:
        for layers in depths:
            plain = {n: float(np.mean(accuracy((block, layers, n, False)))) for n in normalizations}
            with_specials = {n: float(np.mean(accuracy((block, layers, n, True)))) for n in normalizations}
            solved = [n for n, a in plain.items() if a >= settings["solved_at"]]
            failed = [n for n, a in plain.items() if a < settings["solved_at"]]
            findings.append(
                f"{block}, {layers} layer(s), plain input: solved (≥ {settings['solved_at']:.0%} token accuracy) by "
                f"{', '.join(f'`{n}` {plain[n]:.1%}' for n in solved) or 'none'}; not by "
                f"{', '.join(f'`{n}` {plain[n]:.1%}' for n in failed) or 'none'} (chance {chance:.1%}). With "
                f"[CLS]/[SEP]: softmax {with_specials.get('softmax', float('nan')):.1%}.")
    figures = []
    for block in blocks:
        layers = depths[-1]
        name = f"probe_{block}_{layers}L.png"
        plot_curves(f"{workdir}/{name}",
                    {f"{n}{' +[CLS]/[SEP]' if s else ''}": results[(block, layers, n, s)]
                     for n in normalizations for s in (False, True)},
                    curve="accuracy", xlabel="training step", ylabel="held-out token accuracy",
                    title=f"Position probe, {block} blocks, {layers} layer(s), RoPE", ylim=(0, 1.02),
                    styles={f"{n}{' +[CLS]/[SEP]' if s else ''}": {"color": f"C{i}", "linestyle": "--" if s else "-"}
                            for i, n in enumerate(normalizations) for s in (False, True)})
        figures.append((name, f"Probe accuracy vs step, {block} blocks, {layers} layer(s) (dashed: with "
                              f"[CLS]/[SEP]); mean over "
                              f"{settings['seeds']} seeds, band ± 1 std; chance ≈ {chance:.1%}."))
    return write_results(workdir, title="Position probe of relative position encodings (kexue.fm 9105)",
                         claim=CLAIM, settings=settings,
                         sections=[("Held-out token accuracy after training (mean ± std over seeds)", table)],
                         findings=findings, figures=figures, rows=rows)
