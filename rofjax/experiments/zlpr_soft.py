"""The soft-label ZLPR loss (kexue.fm 9064): training on soft targets, and σ(2s) as the probability it implies.

Task: which entity types (PER, LOC, ORG) a People's Daily sentence holds — a 3-label multi-label classification
built from the embedded `peoples_daily_ner` dataset (its train and validation splits). A type counts when one of
its entities lies whole inside the first `max_length` tokens the model reads. Model: a small RoFormerV2 encoder
from scratch, its hidden states pooled (mean over real tokens, or [CLS]) and `Dense(3)` → scores s.

Every variant trains with `rofjax.losses.multilabel_categorical_crossentropy` (which takes hard and soft targets
alike) and the library's AdamW; only the targets differ:
* `hard`: t = y ∈ {0, 1};
* `label smoothing`: t = (1 − ε) y + ε/2;
* `mixup`: the pooled sentence vectors of two examples of the batch are mixed, v = λ v_a + (1 − λ) v_b with
  λ ~ Beta(α, α) per example and b a random permutation of the batch, and so are their targets,
  t = λ y_a + (1 − λ) y_b (sentence-level mixup; the encoder reads each sentence unmixed).

The post derives that the soft loss is minimised at t = σ(2s); probabilities are read as
`rofjax.losses.multilabel_probabilities` (σ(2s)), and the calibration under σ(s) is reported beside it, because
the two links answer different targets: with one class and hard labels the loss is exactly the binary
cross-entropy of σ(s), minimised in expectation over y ~ Bernoulli(p) at σ(s) = p, while the soft loss at the
target t = p is minimised at σ(2s) = p. Calibration is over every (sentence, type) pair as a binary prediction:
the expected calibration error over `bins` (10) equal-width bins of predicted probability, and reliability
diagrams of the same bins.
"""

from __future__ import annotations

import functools
import os
import time

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

DATASET = "peoples_daily_ner"
TYPES = ("PER", "LOC", "ORG")
VARIANTS = ("hard", "label smoothing", "mixup")
CLAIM = ("The ZLPR (multi-label softmax + cross-entropy) loss has a soft-label form, log(1 + Σ t_i e^{−s_i}) + "
         "log(1 + Σ (1 − t_i) e^{s_i}), that trains on soft targets such as label smoothing and mixup; its optimum "
         "is t = σ(2s), so σ(2s), not σ(s), is the probability its scores give (kexue.fm 9064).")


# Metrics (float64 numpy) ------------------------------------------------------------------------------------------

def micro_f1(scores, labels, threshold: float = 0.0) -> float:
    """Micro F1 of `scores > threshold` against 0/1 `labels`, both `[examples, classes]`: 2TP / (2TP + FP + FN)."""
    predicted = np.asarray(scores, np.float64) > threshold
    gold = np.asarray(labels) > 0.5
    tp = float(np.sum(predicted & gold))
    wrong = float(np.sum(predicted ^ gold))
    return 2 * tp / (2 * tp + wrong) if tp or wrong else 1.0


def reliability_bins(probabilities, labels, bins: int = 10) -> np.ndarray:
    """Per equal-width bin of predicted probability ([k/bins, (k+1)/bins), the last closed at 1): `[bins, 3]` =
    (count, Σ probability, Σ label) over every (example, class) pair. Sums, not means, so that seeds pool."""
    p = np.asarray(probabilities, np.float64).ravel()
    y = np.asarray(labels, np.float64).ravel()
    index = np.clip(np.floor(p * bins).astype(np.int64), 0, bins - 1)
    return np.stack([np.bincount(index, minlength=bins).astype(np.float64),
                     np.bincount(index, weights=p, minlength=bins),
                     np.bincount(index, weights=y, minlength=bins)], axis=1)


def calibration_error(table) -> float:
    """Expected calibration error from `reliability_bins`: Σ_b (n_b / N) |mean label_b − mean probability_b|."""
    table = np.asarray(table, np.float64)
    count, prob, positive = table[:, 0], table[:, 1], table[:, 2]
    return float(np.sum(np.abs(positive - prob)) / np.sum(count))


def expected_calibration_error(probabilities, labels, bins: int = 10) -> float:
    return calibration_error(reliability_bins(probabilities, labels, bins))


# Data -------------------------------------------------------------------------------------------------------------

def sentence_labels(tokenizer, record: dict, max_length: int) -> tuple[list[int], np.ndarray]:
    """Token ids of the sentence cut to `max_length`, and which of PER/LOC/ORG lie whole inside them."""
    from rofjax.training.tasks.text_spans import token_boundaries

    ids, _, starts, ends = token_boundaries(tokenizer, record["text"], max_length)
    present = np.zeros(len(TYPES), np.float32)
    for kind, start, end in record["entities"]:
        if kind in TYPES and start in starts and end in ends:
            present[TYPES.index(kind)] = 1.0
    return ids, present


@functools.lru_cache(maxsize=4)
def encoded_split(split: str, max_length: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """`(ids [n, max_length] int32, labels [n, 3] float32)` of the first `limit` records (0: all) of a split."""
    from rofjax.data.datasets import get_dataset
    from rofjax.data.tokenizer import Tokenizer
    from rofjax.data.vocab import EMBEDDED_VOCAB
    from rofjax.training.tasks.base import padded_ids

    tokenizer = Tokenizer(EMBEDDED_VOCAB)
    records = get_dataset(DATASET).split(split, "")
    count = min(len(records), limit or len(records))
    ids, labels = np.zeros((count, max_length), np.int32), np.zeros((count, len(TYPES)), np.float32)
    for row in range(count):
        tokens, present = sentence_labels(tokenizer, records[row], max_length)
        ids[row], labels[row] = padded_ids(tokens, max_length), present
    return ids, labels


def soft_targets(variant: str, labels: np.ndarray, rng: np.random.Generator, settings: dict):
    """`(targets, partner, lam)` of one batch: partner/lam choose what the model mixes (identity and 1: nothing)."""
    batch = len(labels)
    partner, lam = np.arange(batch, dtype=np.int32), np.ones(batch, np.float32)
    if variant == "hard":
        targets = labels
    elif variant == "label smoothing":
        epsilon = settings["label_smoothing"]
        targets = (1 - epsilon) * labels + epsilon / 2
    elif variant == "mixup":
        partner = rng.permutation(batch).astype(np.int32)
        lam = rng.beta(settings["mixup_alpha"], settings["mixup_alpha"], size=batch).astype(np.float32)
        targets = lam[:, None] * labels + (1 - lam[:, None]) * labels[partner]
    else:
        raise ValueError(f"variant {variant!r}; expected one of {VARIANTS}.")
    return targets.astype(np.float32), partner, lam


# Model and training -----------------------------------------------------------------------------------------------

def sentence_classifier(model_config, pooling: str, num_labels: int):
    """Encoder → pooled vector (mixed with a partner's when λ < 1) → Dense(num_labels) scores."""
    import flax.linen as nn
    import jax.numpy as jnp

    from rofjax.models.encoder import Encoder

    class SentenceClassifier(nn.Module):
        @nn.compact
        def __call__(self, ids, partner, lam, deterministic: bool = True):
            hidden = Encoder(model_config, name="encoder")(ids, deterministic=deterministic).astype(jnp.float32)
            if pooling == "mean":
                real = (ids != model_config.pad_token_id)[..., None].astype(jnp.float32)
                pooled = jnp.sum(hidden * real, axis=1) / jnp.maximum(jnp.sum(real, axis=1), 1.0)
            else:
                pooled = hidden[:, 0]
            pooled = lam[:, None] * pooled + (1 - lam[:, None]) * pooled[partner]
            return nn.Dense(num_labels, name="classifier")(pooled)

    return SentenceClassifier()


def trainer(settings: dict):
    """A function (variant, seed) → (metrics, curves). One train step and one scoring function, compiled once for
    every variant: the variants differ only in the targets and the (partner, λ) fed to the same step."""
    import jax
    import jax.numpy as jnp
    import optax

    from rofjax.data.tokenizer import Tokenizer
    from rofjax.data.vocab import EMBEDDED_VOCAB
    from rofjax.losses import multilabel_categorical_crossentropy, multilabel_probabilities
    from rofjax.models.config import get_preset
    from rofjax.training.optim import build_optimizer

    vocab_size = Tokenizer(EMBEDDED_VOCAB).vocab_size
    model_config = get_preset("roformer_v2_tiny", vocab_size=vocab_size, num_layers=settings["num_layers"],
                              hidden_size=settings["hidden_size"], num_heads=settings["num_heads"],
                              intermediate_size=settings["intermediate_size"],
                              dropout_rate=settings["dropout_rate"], attention_dropout_rate=0.0)
    net = sentence_classifier(model_config, settings["pooling"], len(TYPES))
    batch, length = settings["batch_size"], settings["max_length"]
    train_ids, train_labels = encoded_split("train", length, settings["train_examples"])
    dev_ids, dev_labels = encoded_split("validation", length, settings["eval_examples"])

    # Jitted, as every function of the parameters here: eagerly, each of the model's ops compiles on its own.
    @jax.jit
    def init(key):
        identity, ones = jnp.arange(batch, dtype=jnp.int32), jnp.ones(batch, jnp.float32)
        return net.init(key, jnp.zeros((batch, length), jnp.int32), identity, ones)["params"]

    tx = build_optimizer({"lr": settings["lr"], "warmup_steps": settings["warmup_steps"]}, settings["steps"],
                         params=jax.eval_shape(init, jax.random.key(0)))
    init_optimizer = jax.jit(tx.init)

    def loss_fn(params, ids, targets, partner, lam, rng):
        scores = net.apply({"params": params}, ids, partner, lam, deterministic=False, rngs={"dropout": rng})
        return jnp.mean(multilabel_categorical_crossentropy(targets, scores))

    @jax.jit
    def step(params, opt_state, ids, targets, partner, lam, rng):
        loss, grads = jax.value_and_grad(loss_fn)(params, ids, targets, partner, lam, rng)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def score(params, ids):
        identity, ones = jnp.arange(ids.shape[0], dtype=jnp.int32), jnp.ones(ids.shape[0], jnp.float32)
        return net.apply({"params": params}, ids, identity, ones)

    def dev_scores(params):
        # Padded to whole batches, so every call has the compiled shape.
        padded = -(-len(dev_ids) // batch) * batch
        ids = np.zeros((padded, length), np.int32)
        ids[:len(dev_ids)] = dev_ids
        out = [np.asarray(score(params, ids[i:i + batch])) for i in range(0, padded, batch)]
        return np.concatenate(out)[:len(dev_ids)].astype(np.float64)

    def train_variant(variant: str, seed: int):
        started = time.perf_counter()
        rng = np.random.default_rng(seed)
        params = init(jax.random.key(seed))
        opt_state = init_optimizer(params)
        dropout = jax.random.key(10_000 + seed)
        order, cursor, losses = rng.permutation(len(train_ids)), 0, []
        for index in range(settings["steps"]):
            if cursor + batch > len(order):
                order, cursor = rng.permutation(len(train_ids)), 0
            rows = order[cursor:cursor + batch]
            cursor += batch
            targets, partner, lam = soft_targets(variant, train_labels[rows], rng, settings)
            params, opt_state, loss = step(params, opt_state, train_ids[rows], targets, partner, lam,
                                           jax.random.fold_in(dropout, index))
            losses.append(loss)
        losses = [float(x) for x in jax.device_get(losses)]
        scores = dev_scores(params)
        probabilities = np.asarray(multilabel_probabilities(scores), np.float64)
        bins = reliability_bins(probabilities, dev_labels, settings["bins"])
        plain = reliability_bins(0.5 * (1 + np.tanh(scores / 2)), dev_labels, settings["bins"])    # σ(s), no overflow
        tail = losses[-max(1, len(losses) // 10):]
        metrics = {"micro_f1": micro_f1(scores, dev_labels), "ece": calibration_error(bins),
                   "ece_sigmoid_s": calibration_error(plain), "train_loss": float(np.mean(tail)),
                   "seconds": time.perf_counter() - started}
        return metrics, {"reliability": bins.tolist(), "reliability_sigmoid_s": plain.tolist()}

    return train_variant


# Report -----------------------------------------------------------------------------------------------------------

def plot_reliability(path: str, series: dict[str, list[dict]], panels: list[tuple[str, str]]) -> str:
    """One panel per (curve, title): empirical frequency vs mean predicted probability per bin, the seeds pooled,
    error bars ± one std of the per-seed frequencies; the diagonal is perfect calibration."""
    figure, axes = file_figure(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
    for axis, (curve, title) in zip(axes[0], panels):
        axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
        for label, rows in series.items():
            tables = np.asarray([row["curves"][curve] for row in rows], np.float64)      # [seeds, bins, 3]
            pooled = tables.sum(axis=0)
            filled = pooled[:, 0] > 0
            confidence = pooled[filled, 1] / pooled[filled, 0]
            frequency = pooled[filled, 2] / pooled[filled, 0]
            spread = None
            if len(tables) > 1:
                spread = np.zeros(int(filled.sum()))
                for slot, index in enumerate(np.flatnonzero(filled)):
                    seeds = tables[:, index, 0] > 0
                    # A bin that fewer than two seeds fill has no spread to draw.
                    if seeds.sum() > 1:
                        spread[slot] = np.std(tables[seeds, index, 2] / tables[seeds, index, 0], ddof=1)
            axis.errorbar(confidence, frequency, yerr=spread, marker="o", markersize=4, capsize=2, label=label)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_xlabel("predicted probability (bin mean)")
        axis.set_ylabel("empirical frequency of the label")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def run(config, workdir: str, log=print) -> str:
    settings = resolved_settings(config)
    if settings["pooling"] not in ("mean", "cls"):
        raise ValueError(f"pooling={settings['pooling']!r}; expected 'mean' or 'cls'.")
    seeds = range(settings["seeds"])
    runs = Runs(workdir, settings)
    compiled = functools.lru_cache(None)(functools.partial(trainer, settings))   # built only if a run is missing
    results, rows = {}, []
    for variant in VARIANTS:
        got = runs.run(variant, seeds, {"variant": variant},
                       functools.partial(lambda seed, v: compiled()(v, seed), v=variant), log)
        results[variant] = got
        rows += got

    def values(variant, metric):
        return [row["metrics"][metric] for row in results[variant]]

    bins = settings["bins"]
    table = markdown_table(
        ["targets", "dev micro F1 (%)", f"ECE, σ(2s), {bins} bins (%)", f"ECE, σ(s), {bins} bins (%)",
         "train loss, last 10% of steps"],
        [[variant, format_mean_std(values(variant, "micro_f1"), 2, True),
          format_mean_std(values(variant, "ece"), 2, True), format_mean_std(values(variant, "ece_sigmoid_s"), 2, True),
          format_mean_std(values(variant, "train_loss"), 4)] for variant in VARIANTS])
    mean = {v: {m: mean_std(values(v, m))[0] for m in ("micro_f1", "ece", "ece_sigmoid_s")} for v in VARIANTS}
    better_link = [v for v in VARIANTS if mean[v]["ece"] < mean[v]["ece_sigmoid_s"]]
    best = min(VARIANTS, key=lambda v: mean[v]["ece"])
    several = settings["seeds"] > 1

    def against_hard(variant):
        gap = mean[variant]["micro_f1"] - mean["hard"]["micro_f1"]
        said = f"{variant} {100 * gap:+.1f} points"
        if not several:
            return said
        spread = max(mean_std(values(variant, "micro_f1"))[1], mean_std(values("hard", "micro_f1"))[1])
        return f"{said} ({'within' if abs(gap) <= spread else 'beyond'} the larger seed std, {100 * spread:.1f})"

    dev_sentences = int(round(sum(count for count, _, _ in rows[0]["curves"]["reliability"]) / len(TYPES)))
    findings = [
        f"σ(2s) is the better-calibrated reading of the scores for {len(better_link)} of {len(VARIANTS)} target "
        f"variants ({', '.join(better_link) or 'none'}): ECE under σ(2s) vs σ(s): "
        + "; ".join(f"{v} {mean[v]['ece']:.2%} vs {mean[v]['ece_sigmoid_s']:.2%}" for v in VARIANTS) + ".",
        f"Lowest ECE under σ(2s): {best} ({mean[best]['ece']:.2%}).",
        f"Micro F1 of the soft-target variants against hard targets ({mean['hard']['micro_f1']:.2%}): "
        + "; ".join(against_hard(v) for v in VARIANTS if v != "hard") + ".",
        f"Dev set: {dev_sentences} validation sentences × {len(TYPES)} types; {settings['seeds']} seed(s) per "
        f"variant" + ("." if several else "; one seed gives no spread to judge these gaps by.")]
    figure = "zlpr_soft_reliability.png"
    plot_reliability(os.path.join(workdir, figure), {v: results[v] for v in VARIANTS},
                     [("reliability", "probability σ(2s) (the soft loss's optimum)"),
                      ("reliability_sigmoid_s", "probability σ(s), for contrast")])
    return write_results(
        workdir, title="Soft-label ZLPR: label smoothing, mixup and the σ(2s) probability (kexue.fm 9064)",
        claim=CLAIM, settings=settings,
        sections=[("Dev multi-label metrics (mean ± std over seeds)", table)], findings=findings,
        figures=[(figure, f"Reliability diagrams on the dev (sentence, type) pairs, {bins} bins, scores read as "
                          f"σ(2s) (left) and σ(s) (right); {settings['seeds']} seed(s) pooled, error bars ± 1 std "
                          f"over seeds.")],
        rows=rows)
