"""GAU-α against RoFormerV2 across sequence lengths: training-step time and memory at a fixed number of tokens
per step (kexue.fm 9052, FLASH 8934).

Both models are scaled-down copies of the published base shapes (GAU-α: twice the layers of RoFormerV2, one GAU
of width 2·hidden per layer; RoFormerV2: attention + FFN of width 4·hidden); from `chunk_from_length` on, GAU-α also runs
with FLASH's mixed-chunk attention (a third row). Each repeat times `rounds` steps after a warm-up; memory is what XLA's compiled step
reserves (arguments + outputs + temporaries − donated aliases), which does not vary between repeats.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from rofjax.experiments.report import (
    Runs,
    file_figure,
    format_mean_std,
    markdown_table,
    resolved_settings,
    write_results,
)

CLAIM = ("GAU-α (two GAU layers in place of each attention + FFN pair of RoFormerV2) has no speed advantage at short "
         "lengths, but beyond 512 tokens it trains faster than RoFormerV2 and in less memory, the more so the "
         "longer the sequence (kexue.fm 9052); FLASH's chunked attention makes the cost about linear in length "
         "(kexue.fm 8934).")


def family_model(family: str, length: int, settings: dict):
    from rofjax.models.config import family_config

    hidden = settings["hidden_size"]
    common = dict(vocab_size=settings["vocab_size"], hidden_size=hidden, max_position_embeddings=length,
                  dropout_rate=0.1, attention_dropout_rate=0.1)
    if family.startswith("gau_alpha"):
        chunk = settings["gau_chunk_size"] if family == "gau_alpha_chunked" else None
        return family_config("gau_alpha", num_layers=2 * settings["num_layers"], num_heads=1,
                             intermediate_size=2 * hidden, key_size=settings["gau_key_size"],
                             gau_chunk_size=chunk, **common)
    return family_config("roformer_v2", num_layers=settings["num_layers"], num_heads=settings["num_heads"],
                         intermediate_size=4 * hidden, **common)


def compiled_step(config, batch: int, length: int):
    """The jitted masked-LM training step (AdamW, logits for every token) compiled for `batch × length`, its
    state, inputs, and the bytes XLA reserves for it."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import linen as nn

    from rofjax.losses import masked_lm_crossentropy
    from rofjax.models import Encoder

    model = Encoder(config)
    ids = jnp.asarray(np.random.default_rng(0).integers(1, config.vocab_size, size=(batch, length)), jnp.int32)
    # Jitted: eagerly, every op of the initialisation compiles on its own (most of a smoke run's time).
    params = nn.unbox(jax.jit(lambda key: model.init(key, ids, method=Encoder.masked_lm))(jax.random.key(0)))["params"]
    tx = optax.adamw(1e-4, weight_decay=0.01)
    opt_state = jax.jit(tx.init)(params)

    def step(params, opt_state, key):
        def loss_fn(p):
            logits = model.apply({"params": p}, ids, deterministic=False, rngs={"dropout": key},
                                 method=Encoder.masked_lm)
            return masked_lm_crossentropy(ids, logits)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt_state, jax.random.key(0)).compile()
    memory = compiled.memory_analysis()
    reserved = None
    if memory is not None:
        reserved = (memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
                    - memory.alias_size_in_bytes)
    return compiled, params, opt_state, reserved


def measure(family: str, length: int, settings: dict):
    """A function repeat → (metrics, curves): one compile, then each repeat times its own rounds."""
    import jax

    batch = max(1, settings["tokens_per_step"] // length)
    config = family_model(family, length, settings)
    compiled, params, opt_state, reserved = compiled_step(config, batch, length)
    state = {"params": params, "opt": opt_state}

    def one_step(key):
        state["params"], state["opt"], loss = compiled(state["params"], state["opt"], key)
        jax.block_until_ready(loss)

    one_step(jax.random.key(0))                                   # warm-up

    def run(repeat: int):
        times = []
        for index in range(settings["rounds"]):
            started = time.perf_counter()
            one_step(jax.random.key(1000 * repeat + index + 1))
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        metrics = {"ms_per_step": median * 1e3, "tokens_per_s": batch * length / median, "batch": batch,
                   "reserved_mib": (reserved or 0) / 2**20,
                   "parameters": sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))}
        return metrics, {}

    return run


def run(config, workdir: str, log=print) -> str:
    import functools

    settings = resolved_settings(config)
    lengths = [int(n) for n in str(settings["lengths"]).split(",") if n]
    families = ("roformer_v2", "gau_alpha")

    def variants(length):
        return families + (("gau_alpha_chunked",) if length >= settings["chunk_from_length"] else ())

    runs = Runs(workdir, settings)
    results, rows = {}, []
    for length in lengths:
        for family in variants(length):
            compiled = functools.lru_cache(None)(functools.partial(measure, family, length, settings))
            got = runs.run(f"{family}@{length}", range(settings["seeds"]), {"family": family, "length": length},
                           functools.partial(lambda repeat, fn: fn()(repeat), fn=compiled), log)
            results[(family, length)] = got
            rows += got

    def values(family, length, metric):
        return [row["metrics"][metric] for row in results[(family, length)]]

    table_rows = []
    for length in lengths:
        for family in variants(length):
            chunk = family == "gau_alpha_chunked"
            table_rows.append([
                f"gau_alpha (chunks of {settings['gau_chunk_size']})" if chunk else family, length,
                int(values(family, length, "batch")[0]), format_mean_std(values(family, length, "ms_per_step"), 1),
                f"{np.mean(values(family, length, 'tokens_per_s')):.0f}",
                f"{values(family, length, 'reserved_mib')[0]:.0f}",
                f"{int(values(family, length, 'parameters')[0]):,}"])
    table = markdown_table(["model", "length", "batch", "ms/step (mean ± std over repeats)", "tokens/s",
                            "compiled step reserves (MiB)", "parameters"], table_rows)
    findings = []
    for length in lengths:
        ratio = np.mean(values("roformer_v2", length, "ms_per_step")) / np.mean(values("gau_alpha", length,
                                                                                       "ms_per_step"))
        memory = values("roformer_v2", length, "reserved_mib")[0] / max(values("gau_alpha", length,
                                                                               "reserved_mib")[0], 1e-9)
        findings.append(f"{length} tokens: GAU-α's step is {ratio:.2f}× as fast as RoFormerV2's and reserves "
                        f"{1 / memory:.2f}× its memory.")
    for length in lengths:
        if "gau_alpha_chunked" in variants(length):
            ratio = np.mean(values("roformer_v2", length, "ms_per_step")) / np.mean(
                values("gau_alpha_chunked", length, "ms_per_step"))
            memory = values("gau_alpha_chunked", length, "reserved_mib")[0] / max(
                values("roformer_v2", length, "reserved_mib")[0], 1e-9)
            findings.append(f"{length} tokens, GAU-α with chunks of {settings['gau_chunk_size']}: {ratio:.2f}× as "
                            f"fast as RoFormerV2, {memory:.2f}× its memory.")
    first, last = lengths[0], lengths[-1]
    for family in families:
        growth = np.mean(values(family, last, "ms_per_step")) / np.mean(values(family, first, "ms_per_step"))
        memory = values(family, last, "reserved_mib")[0] / max(values(family, first, "reserved_mib")[0], 1e-9)
        findings.append(f"{family} from {first} to {last} tokens per sequence (same tokens per step): step time "
                        f"×{growth:.2f}, memory ×{memory:.2f}.")
    import jax

    kind, backend = jax.devices()[0].device_kind, jax.default_backend()
    where = backend.upper() if kind.lower() == backend else f"{kind} ({backend})"
    findings.append(f"Measured on {where} in float32, {os.cpu_count()} cores seen by the process; timings on a "
                    f"shared machine move with its load (the repeats' std shows by how much). The GPU numbers are "
                    f"in the README's Accelerators section, with their card and date.")
    figure = "gau_vs_attention.png"
    _plot(f"{workdir}/{figure}", lengths, families, values,
          chunked=[n for n in lengths if "gau_alpha_chunked" in variants(n)])
    return write_results(workdir, title="GAU-α vs RoFormerV2 across sequence lengths",
                         claim=CLAIM, settings=settings, sections=[("Training step, fixed tokens per step", table)],
                         findings=findings,
                         figures=[(figure, "Step time (left) and compiled-step memory (right) against sequence "
                                           "length at a fixed number of tokens per step; error bars ± 1 std "
                                           "over repeats.")],
                         rows=rows)


def _plot(path, lengths, families, values, chunked):
    figure, (left, right) = file_figure(1, 2, figsize=(10, 4))
    for family in families:
        times = [values(family, n, "ms_per_step") for n in lengths]
        left.errorbar(lengths, [np.mean(t) for t in times],
                      yerr=[np.std(t, ddof=1) if len(t) > 1 else 0.0 for t in times], marker="o", capsize=3,
                      label=family)
        right.plot(lengths, [values(family, n, "reserved_mib")[0] for n in lengths], marker="o", label=family)
    if chunked:
        left.plot(chunked, [np.mean(values("gau_alpha_chunked", n, "ms_per_step")) for n in chunked], "s",
                  label="gau_alpha, FLASH chunks")
        right.plot(chunked, [values("gau_alpha_chunked", n, "reserved_mib")[0] for n in chunked], "s",
                   label="gau_alpha, FLASH chunks")
    for axis, label in ((left, "ms per training step"), (right, "compiled step reserves (MiB)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("sequence length (tokens per step fixed)")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle("GAU-α vs RoFormerV2: training step across lengths")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
