"""Losses: the multilabel "softmax + cross-entropy" (ZLPR) family and masked-LM cross-entropy.

ZLPR with soft labels t ∈ [0, 1] (kexue.fm 7359, 9064; arXiv 2208.02955), over the last axis:

    L = log(1 + Σ_i t_i e^{−s_i}) + log(1 + Σ_i (1 − t_i) e^{s_i})

which is the hard-label loss `log(1 + Σ_neg e^{s}) + log(1 + Σ_pos e^{−s})` when t ∈ {0, 1}; its optimum is
t = σ(2s), so `multilabel_probabilities` is σ(2s), not σ(s).

Sparse form (kexue.fm 8888) for a few positive indices among many classes, with `a = log(1 + Σ_all e^{s})`,
`b = log Σ_pos e^{s}`: `log(1 + Σ_neg e^{s}) = a + log(1 − e^{b − a})`, the last factor clipped to [1e-7, 1].

A score that is −inf (or ≤ −1e11, the finite "infinity" older bert4keras used) is masked: it is neither a
positive nor a negative. All arithmetic is float32 whatever the dtype of the scores.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MASKED_SCORE_THRESHOLD = -1e11
SPARSE_CLIP_EPSILON = 1e-7


def _logsumexp_with_zero(x):
    """`log(1 + Σ e^x)` over the last axis, stable and with zero gradient to −inf entries."""
    zeros = jnp.zeros(x.shape[:-1] + (1,), x.dtype)
    return jax.nn.logsumexp(jnp.concatenate([x, zeros], axis=-1), axis=-1)


def multilabel_categorical_crossentropy(y_true, y_pred):
    """ZLPR loss with hard or soft labels; `y_true` and `y_pred` have the same shape, the last axis is reduced."""
    y_true = jnp.asarray(y_true)
    y_pred = jnp.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"multilabel_categorical_crossentropy: y_true of shape {tuple(y_true.shape)} and y_pred of "
                         f"shape {tuple(y_pred.shape)} must have the same shape.")
    s = y_pred.astype(jnp.float32)
    t = y_true.astype(jnp.float32)
    scored = s > MASKED_SCORE_THRESHOLD
    safe_s = jnp.where(scored, s, 0.0)
    # Explicit masks instead of log(0) = −inf keep both the loss and its gradient finite at t ∈ {0, 1}.
    is_negative = scored & (t < 1)
    is_positive = scored & (t > 0)
    neg = jnp.where(is_negative, safe_s + jnp.log(jnp.where(is_negative, 1 - t, 1.0)), -jnp.inf)
    pos = jnp.where(is_positive, -safe_s + jnp.log(jnp.where(is_positive, t, 1.0)), -jnp.inf)
    return _logsumexp_with_zero(neg) + _logsumexp_with_zero(pos)


def sparse_multilabel_categorical_crossentropy(y_true, y_pred, mask_zero: bool = False):
    """Sparse ZLPR loss: `y_true` `[..., P]` integer indices of the positive classes, `y_pred` `[..., K]` scores.

    With `mask_zero`, index 0 pads the positive lists and class 0 is neither positive nor negative. Repeated
    indices count once per occurrence, as in bert4keras. A positive index whose score is masked (−inf) makes the
    loss infinite: such a label can never be met.
    """
    y_true = jnp.asarray(y_true)
    y_pred = jnp.asarray(y_pred)
    if not jnp.issubdtype(y_true.dtype, jnp.integer):
        raise TypeError(f"sparse_multilabel_categorical_crossentropy: y_true must hold integer class indices; got "
                        f"dtype {y_true.dtype} (shape {tuple(y_true.shape)}).")
    if y_true.ndim != y_pred.ndim or y_true.shape[:-1] != y_pred.shape[:-1]:
        raise ValueError(f"sparse_multilabel_categorical_crossentropy: y_true {tuple(y_true.shape)} and y_pred "
                         f"{tuple(y_pred.shape)} must agree on every axis but the last ([..., P] vs [..., K]).")
    s = y_pred.astype(jnp.float32)
    s = jnp.where(s > MASKED_SCORE_THRESHOLD, s, -jnp.inf)
    index = y_true.astype(jnp.int32)
    zeros = jnp.zeros(s.shape[:-1] + (1,), jnp.float32)
    if mask_zero:
        # Class 0 is padding: +inf makes a padded positive contribute e^{−inf} = 0 to the positive term …
        s_pos = jnp.concatenate([zeros + jnp.inf, s[..., 1:], zeros], axis=-1)
        pos_scores = jnp.take_along_axis(s_pos, index, axis=-1)
        # … and −inf removes it from the all-classes term.
        s_all = jnp.concatenate([zeros - jnp.inf, s[..., 1:], zeros], axis=-1)
    else:
        s_all = jnp.concatenate([s, zeros], axis=-1)
    pos_scores_all = jnp.take_along_axis(s_all, index, axis=-1)
    if not mask_zero:
        pos_scores = pos_scores_all
    pos_loss = _logsumexp_with_zero(-pos_scores)
    all_loss = jax.nn.logsumexp(s_all, axis=-1)
    # Rows whose positives are all padding would make logsumexp(−inf, …) = −inf with a NaN gradient.
    has_positive = jnp.any(pos_scores_all > -jnp.inf, axis=-1, keepdims=True)
    pos_lse = jax.nn.logsumexp(jnp.where(has_positive, pos_scores_all, 0.0), axis=-1)
    pos_share = jnp.where(has_positive[..., 0], jnp.exp(pos_lse - all_loss), 0.0)
    neg_share = jnp.clip(1 - pos_share, SPARSE_CLIP_EPSILON, 1.0)
    return pos_loss + all_loss + jnp.log(neg_share)


def multilabel_probabilities(y_pred):
    """Per-class probabilities σ(2s) of a ZLPR-trained scorer (the loss's optimum is t = σ(2s))."""
    return jax.nn.sigmoid(2 * jnp.asarray(y_pred, jnp.float32))


def global_pointer_crossentropy(y_true, y_pred):
    """Dense GlobalPointer loss: `[batch, heads, n, n]` labels and logits, ZLPR over n·n, mean over batch·heads."""
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    if y_pred.ndim != 4 or y_true.shape != y_pred.shape:
        raise ValueError(f"global_pointer_crossentropy: y_true {tuple(y_true.shape)} and y_pred "
                         f"{tuple(y_pred.shape)} must both be [batch, heads, n, n].")
    batch, heads, n, m = y_pred.shape
    loss = multilabel_categorical_crossentropy(y_true.reshape(batch * heads, n * m),
                                               y_pred.reshape(batch * heads, n * m))
    return jnp.mean(loss)


def sparse_global_pointer_crossentropy(y_true, y_pred, mask_zero: bool = True):
    """Sparse GlobalPointer loss (GPLinker): `y_true` `[batch, heads, P, 2]` (start, end) token pairs, `y_pred`
    `[batch, heads, n, n]`; the flat index `start·n + end` is computed in int32 whatever the logits' dtype. The
    pair (0, 0) pads the lists when `mask_zero`. Sum over heads, mean over the batch."""
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    if y_pred.ndim != 4 or y_true.ndim != 4 or y_true.shape[-1] != 2 or y_true.shape[:2] != y_pred.shape[:2]:
        raise ValueError(f"sparse_global_pointer_crossentropy: y_true must be [batch, heads, P, 2] and y_pred "
                         f"[batch, heads, n, n] with the same batch and heads; got {tuple(y_true.shape)} and "
                         f"{tuple(y_pred.shape)}.")
    if not jnp.issubdtype(y_true.dtype, jnp.integer):
        raise TypeError(f"sparse_global_pointer_crossentropy: y_true must hold integer token positions; got dtype "
                        f"{y_true.dtype}.")
    batch, heads, n, m = y_pred.shape
    pairs = y_true.astype(jnp.int32)
    flat_index = pairs[..., 0] * jnp.int32(m) + pairs[..., 1]
    loss = sparse_multilabel_categorical_crossentropy(flat_index, y_pred.reshape(batch, heads, n * m),
                                                      mask_zero=mask_zero)
    return jnp.mean(jnp.sum(loss, axis=1))


def integer_label_crossentropy(logits, labels):
    """`logsumexp(logits) − logits[label]` over the last axis: optax's `softmax_cross_entropy_with_integer_labels`,
    equal to it bit for bit, with the label's logit read by comparing every vocabulary index with the label and
    summing the one logit that matches. Its gradient is then a compare-and-select that fuses into the softmax's,
    where `take_along_axis`'s is a scatter into a `[positions, vocab]` buffer (a pass of its own, and on CPU a
    serial scatter-add followed by a transpose). Labels outside `[0, vocab)` read a logit of 0."""
    hit = labels[..., None] == jnp.arange(logits.shape[-1], dtype=labels.dtype)
    return jax.nn.logsumexp(logits, axis=-1) - jnp.sum(jnp.where(hit, logits, 0), axis=-1)


def masked_lm_crossentropy(labels, logits, weights=None):
    """Mean token cross-entropy over the positions that count.

    `labels` `[...]` int, `logits` `[..., vocab]`; `weights` (default `labels != 0`, bert4keras's convention that
    id 0 is "not masked") selects and weighs positions. Returns `Σ w·CE / (Σ w + 1e-7)`.
    """
    labels, logits = jnp.asarray(labels), jnp.asarray(logits)
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"masked_lm_crossentropy: labels {tuple(labels.shape)} must equal logits "
                         f"{tuple(logits.shape)} without its last (vocab) axis.")
    if weights is None:
        weights = labels != 0
    weights = jnp.asarray(weights, jnp.float32)
    if weights.shape != labels.shape:
        raise ValueError(f"masked_lm_crossentropy: weights {tuple(weights.shape)} must match labels "
                         f"{tuple(labels.shape)}.")
    ce = integer_label_crossentropy(logits.astype(jnp.float32), labels.astype(jnp.int32))
    return jnp.sum(ce * weights) / (jnp.sum(weights) + 1e-7)


def masked_lm_accuracy(labels, logits, weights=None):
    """Weighted accuracy of `argmax(logits)` on the positions `masked_lm_crossentropy` counts."""
    labels, logits = jnp.asarray(labels), jnp.asarray(logits)
    if weights is None:
        weights = labels != 0
    weights = jnp.asarray(weights, jnp.float32)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return jnp.sum(correct * weights) / (jnp.sum(weights) + 1e-7)
