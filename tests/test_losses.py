import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rofjax import losses
from tests import numpy_reference as ref


def test_hard_labels_match_the_original_formula(rng):
    s = (rng.normal(size=(4, 3, 20)) * 3).astype(np.float32)
    positive = rng.random((4, 3, 20)) < 0.2
    got = losses.multilabel_categorical_crossentropy(positive.astype(np.float32), s)
    assert got.shape == (4, 3)
    np.testing.assert_allclose(np.asarray(got), ref.zlpr_hard(positive, s), rtol=1e-5, atol=1e-5)


def test_soft_labels_match_the_soft_formula_and_reduce_to_hard(rng):
    s = (rng.normal(size=(5, 16)) * 2).astype(np.float32)
    t = rng.random((5, 16)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(losses.multilabel_categorical_crossentropy(t, s)), ref.zlpr(t, s),
                               rtol=1e-5, atol=1e-5)
    hard = (rng.random((5, 16)) < 0.3).astype(np.float32)
    np.testing.assert_allclose(np.asarray(losses.multilabel_categorical_crossentropy(hard, s)),
                               ref.zlpr_hard(hard > 0, s), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ref.zlpr(hard, s), ref.zlpr_hard(hard > 0, s), rtol=1e-12)


def test_soft_gradient_vanishes_at_sigmoid_of_twice_the_score(rng):
    s = jnp.asarray(rng.normal(size=(3, 10)).astype(np.float32))
    t = jax.nn.sigmoid(2 * s)
    grad = jax.grad(lambda z: jnp.sum(losses.multilabel_categorical_crossentropy(t, z)))(s)
    np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-6)
    off = jax.grad(lambda z: jnp.sum(losses.multilabel_categorical_crossentropy(jax.nn.sigmoid(z), z)))(s)
    assert float(jnp.max(jnp.abs(off))) > 1e-2
    np.testing.assert_allclose(np.asarray(losses.multilabel_probabilities(s)), np.asarray(t), rtol=1e-6)


def test_finite_loss_and_gradient_at_label_extremes():
    s = jnp.asarray([[30.0, -30.0, 0.5, -0.5, 80.0, -80.0]])
    t = jnp.asarray([[1.0, 0.0, 1.0, 0.0, 0.0, 1.0]])
    value, grad = jax.value_and_grad(lambda z: jnp.sum(losses.multilabel_categorical_crossentropy(t, z)))(s)
    assert bool(jnp.isfinite(value)) and bool(jnp.all(jnp.isfinite(grad)))
    np.testing.assert_allclose(float(value), float(ref.zlpr(t, s)[0]), rtol=1e-5)


@pytest.mark.parametrize("mask_value", [-np.inf, -1e12])
def test_premasked_scores_are_neither_positive_nor_negative(rng, mask_value):
    s = rng.normal(size=(3, 12)).astype(np.float32)
    scored = rng.random((3, 12)) < 0.7
    t = rng.random((3, 12)).astype(np.float32)
    t[~scored] = 1.0                                   # even a label of 1 on a masked score is ignored
    masked = np.where(scored, s, mask_value).astype(np.float32)
    value = losses.multilabel_categorical_crossentropy(t, masked)
    expected = [ref.zlpr(t[row][scored[row]], s[row][scored[row]]) for row in range(3)]
    np.testing.assert_allclose(np.asarray(value), expected, rtol=1e-5)
    grad = jax.grad(lambda z: jnp.sum(losses.multilabel_categorical_crossentropy(t, z)))(jnp.asarray(masked))
    assert bool(jnp.all(jnp.isfinite(grad))) and bool(jnp.all(grad[~scored] == 0))


def test_sparse_equals_dense_on_the_same_labels(rng):
    batch, classes, positives = 6, 30, 4
    s = (rng.normal(size=(batch, classes)) * 2).astype(np.float32)
    index = np.stack([rng.choice(np.arange(1, classes), positives, replace=False) for _ in range(batch)])
    dense_labels = np.zeros((batch, classes), np.float32)
    np.put_along_axis(dense_labels, index, 1.0, axis=-1)
    dense = losses.multilabel_categorical_crossentropy(dense_labels, s)
    sparse = losses.sparse_multilabel_categorical_crossentropy(index, s)
    np.testing.assert_allclose(np.asarray(sparse), np.asarray(dense), rtol=1e-5, atol=1e-5)

    # mask_zero: 0 pads the index lists and class 0 is removed from the negatives too.
    padded = np.where(np.arange(positives)[None] < rng.integers(0, positives + 1, size=(batch, 1)), index, 0)
    labels = np.zeros((batch, classes), np.float32)
    for row, cols in enumerate(padded):
        labels[row, cols[cols > 0]] = 1.0
    scored = np.ones((batch, classes), bool)
    scored[:, 0] = False
    sparse_masked = losses.sparse_multilabel_categorical_crossentropy(padded, s, mask_zero=True)
    np.testing.assert_allclose(np.asarray(sparse_masked), ref.zlpr_hard(labels > 0, s, scored), rtol=1e-5,
                               atol=1e-5)


def test_sparse_loss_stays_finite_when_the_sample_is_fitted():
    s = jnp.full((1, 8), -40.0).at[0, 3].set(60.0)
    index = jnp.asarray([[3]])
    value, grad = jax.value_and_grad(
        lambda z: jnp.sum(losses.sparse_multilabel_categorical_crossentropy(index, z)))(s)
    assert bool(jnp.isfinite(value)) and value >= 0 and bool(jnp.all(jnp.isfinite(grad)))
    all_padding = jnp.zeros((1, 3), jnp.int32)
    value, grad = jax.value_and_grad(lambda z: jnp.sum(
        losses.sparse_multilabel_categorical_crossentropy(all_padding, z, mask_zero=True)))(s)
    np.testing.assert_allclose(float(value), float(np.log1p(np.exp(60.0) + 6 * np.exp(-40.0))), rtol=1e-6)
    assert bool(jnp.all(jnp.isfinite(grad)))


def test_global_pointer_sparse_equals_dense(rng):
    batch, heads, n = 2, 3, 7
    logits = rng.normal(size=(batch, heads, n, n)).astype(np.float32)
    upper = np.triu(np.ones((n, n), bool))
    logits = np.where(upper, logits, -np.inf).astype(np.float32)
    pairs = np.zeros((batch, heads, 2, 2), np.int32)                  # (0, 0) pads
    dense = np.zeros((batch, heads, n, n), np.float32)
    for b in range(batch):
        for h in range(heads):
            for p in range(rng.integers(0, 3)):
                start = rng.integers(1, n)
                end = rng.integers(start, n)
                if dense[b, h, start, end]:
                    continue
                pairs[b, h, p] = (start, end)
                dense[b, h, start, end] = 1.0
    dense_loss = losses.global_pointer_crossentropy(dense, logits)
    rows = losses.multilabel_categorical_crossentropy(dense.reshape(batch, heads, -1), logits.reshape(batch, heads, -1))
    np.testing.assert_allclose(float(dense_loss), float(np.mean(rows)), rtol=1e-6)
    # Cell (0, 0) is [CLS]–[CLS]: the sparse loss excludes it (mask_zero), so exclude it from the dense side too.
    no_cls = logits.copy()
    no_cls[:, :, 0, 0] = -np.inf
    dense_no_cls = losses.multilabel_categorical_crossentropy(dense.reshape(batch, heads, -1),
                                                              no_cls.reshape(batch, heads, -1))
    sparse_loss = losses.sparse_global_pointer_crossentropy(pairs, logits)
    np.testing.assert_allclose(float(sparse_loss), float(jnp.mean(jnp.sum(dense_no_cls, axis=1))), rtol=1e-5)


def test_bfloat16_logits_do_not_corrupt_sparse_indices(rng):
    n = 300
    far = (n - 1) * n + (n - 2)                                      # 89998: not a bfloat16 number
    assert float(jnp.asarray(far, jnp.bfloat16)) != far
    logits = jnp.asarray(rng.normal(size=(1, 1, n, n)).astype(np.float32)).astype(jnp.bfloat16)
    pairs = jnp.asarray([[[[n - 1, n - 2], [3, 5]]]], jnp.int32)
    got = losses.sparse_global_pointer_crossentropy(pairs, logits)
    s = np.asarray(logits.astype(jnp.float32), np.float64).reshape(-1)
    positive = np.zeros(n * n, bool)
    positive[[far, 3 * n + 5]] = True
    scored = np.ones(n * n, bool)
    scored[0] = False
    np.testing.assert_allclose(float(got), float(ref.zlpr_hard(positive, s, scored)), rtol=1e-4)


def test_gradients_match_finite_differences(rng):
    s = jnp.asarray(rng.normal(size=(2, 6)).astype(np.float32))
    t = jnp.asarray(rng.random((2, 6)).astype(np.float32))
    index = jnp.asarray([[1, 4], [2, 0]], jnp.int32)
    tolerance = dict(atol=2e-2, rtol=2e-2, eps=1e-2)
    check_grads(lambda z: losses.multilabel_categorical_crossentropy(t, z), (s,), order=1, modes=["rev"],
                **tolerance)
    check_grads(lambda z: losses.sparse_multilabel_categorical_crossentropy(index, z, mask_zero=True), (s,),
                order=1, modes=["rev"], **tolerance)
    labels = jnp.asarray([3, 0])
    check_grads(lambda z: losses.masked_lm_crossentropy(labels, z), (s,), order=1, modes=["rev"], **tolerance)


def test_jit_matches_eager(rng):
    s = rng.normal(size=(3, 9)).astype(np.float32)
    t = rng.random((3, 9)).astype(np.float32)
    index = rng.integers(0, 9, size=(3, 2)).astype(np.int32)
    for fn, args in [(losses.multilabel_categorical_crossentropy, (t, s)),
                     (losses.sparse_multilabel_categorical_crossentropy, (index, s))]:
        np.testing.assert_allclose(np.asarray(jax.jit(fn)(*args)), np.asarray(fn(*args)), rtol=1e-6)


def test_masked_lm_crossentropy(rng):
    logits = rng.normal(size=(2, 5, 11)).astype(np.float32)
    labels = np.array([[0, 3, 0, 7, 1], [2, 0, 0, 0, 10]])
    log_probs = logits - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    counted = labels != 0
    np.testing.assert_allclose(float(losses.masked_lm_crossentropy(labels, logits)),
                               ce[counted].sum() / counted.sum(), rtol=1e-5)
    weights = rng.random((2, 5)).astype(np.float32)
    np.testing.assert_allclose(float(losses.masked_lm_crossentropy(labels, logits, weights)),
                               (ce * weights).sum() / weights.sum(), rtol=1e-5)
    accuracy = (logits.argmax(-1) == labels)[counted].mean()
    np.testing.assert_allclose(float(losses.masked_lm_accuracy(labels, logits)), accuracy, rtol=1e-5)


def test_losses_reject_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        losses.multilabel_categorical_crossentropy(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 4\)"):
        losses.sparse_multilabel_categorical_crossentropy(jnp.zeros((3, 2), jnp.int32), jnp.zeros((2, 4)))
    with pytest.raises(TypeError, match="integer"):
        losses.sparse_multilabel_categorical_crossentropy(jnp.zeros((2, 2)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\[batch, heads, P, 2\]"):
        losses.sparse_global_pointer_crossentropy(jnp.zeros((2, 3, 4), jnp.int32), jnp.zeros((2, 3, 5, 5)))
    with pytest.raises(ValueError, match=r"\(2, 5\).*\(2, 4, 7\)"):
        losses.masked_lm_crossentropy(jnp.zeros((2, 5), jnp.int32), jnp.zeros((2, 4, 7)))


def test_integer_label_crossentropy_is_optaxs_bit_for_bit_and_its_gradient_needs_no_scatter(rng):
    import optax

    from rofjax.losses import integer_label_crossentropy

    logits = (rng.normal(size=(3, 5, 37)) * 4).astype(np.float32)
    labels = rng.integers(0, 37, size=(3, 5)).astype(np.int32)
    weights = rng.uniform(size=(3, 5)).astype(np.float32)
    ours = integer_label_crossentropy(jnp.asarray(logits), jnp.asarray(labels))
    np.testing.assert_array_equal(ours, optax.softmax_cross_entropy_with_integer_labels(logits, labels))

    wide = logits.astype(np.float64)
    top = wide.max(-1, keepdims=True)
    log_norm = np.log(np.exp(wide - top).sum(-1)) + top[..., 0]
    label_logit = np.take_along_axis(wide, labels[..., None], -1)[..., 0]
    np.testing.assert_allclose(ours, log_norm - label_logit, rtol=1e-6, atol=1e-6)

    def weighted(x):
        return jnp.sum(weights * integer_label_crossentropy(x, jnp.asarray(labels)))

    softmax = np.exp(wide - log_norm[..., None])
    one_hot = np.eye(37)[labels]
    np.testing.assert_allclose(jax.grad(weighted)(jnp.asarray(logits)), weights[..., None] * (softmax - one_hot),
                               rtol=1e-5, atol=1e-6)
    assert "scatter" not in jax.jit(jax.grad(weighted)).lower(jnp.asarray(logits)).as_text()
