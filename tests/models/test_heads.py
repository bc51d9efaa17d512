import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from rofjax.models import (
    Encoder,
    GPLinker,
    MaskedLM,
    MultipleChoice,
    SequenceClassifier,
    SpanClassifier,
    TokenClassifier,
    get_preset,
)
from rofjax.nn.global_pointer import EfficientGlobalPointer, GlobalPointer
from rofjax.nn.rope import RopeOptions

IDS = np.array([[2, 9, 17, 33, 4, 0], [2, 5, 48, 3, 11, 41]])
CONFIG = get_preset("roformer_v2_tiny")


def _encoder_hidden(params, ids=IDS):
    return np.asarray(Encoder(CONFIG).apply({"params": params["encoder"]}, ids), np.float64)


def test_sequence_classifier_reads_the_cls_vector():
    model = SequenceClassifier(CONFIG, num_labels=3)
    params = nn.unbox(model.init(jax.random.key(0), IDS))["params"]
    logits = np.asarray(model.apply({"params": params}, IDS))
    head = params["classifier"]
    expected = _encoder_hidden(params)[:, 0] @ np.asarray(head["kernel"]) + np.asarray(head["bias"])
    assert logits.shape == (2, 3)
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    pooled = SequenceClassifier(CONFIG, num_labels=3, pooling="pooler")
    assert "pooler" in pooled.init(jax.random.key(0), IDS)["params"]["encoder"]


def test_token_classifier_and_masked_lm_shapes():
    tokens = TokenClassifier(CONFIG, num_labels=5)
    assert tokens.apply(tokens.init(jax.random.key(0), IDS), IDS).shape == (2, 6, 5)
    mlm = MaskedLM(CONFIG)
    variables = mlm.init(jax.random.key(0), IDS)
    logits = np.asarray(mlm.apply(variables, IDS))
    params = nn.unbox(variables)["params"]
    table = np.asarray(params["encoder"]["embeddings"]["word_embeddings"]["embedding"], np.float64)
    np.testing.assert_allclose(logits, _encoder_hidden(params) @ table.T, atol=1e-4)


@pytest.mark.parametrize("efficient", [False, True])
def test_span_classifier_is_a_pointer_over_hidden_states(efficient):
    model = SpanClassifier(CONFIG, heads=3, head_size=8, efficient=efficient)
    params = nn.unbox(model.init(jax.random.key(0), IDS))["params"]
    logits = np.asarray(model.apply({"params": params}, IDS))
    pointer = (EfficientGlobalPointer if efficient else GlobalPointer)(heads=3, head_size=8)
    hidden = Encoder(CONFIG).apply({"params": params["encoder"]}, IDS)
    expected = np.asarray(pointer.apply({"params": params["pointer"]}, hidden, IDS != 0))
    assert logits.shape == (2, 3, 6, 6)
    np.testing.assert_array_equal(np.isneginf(logits), np.isneginf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(logits[finite], expected[finite], atol=1e-5)
    assert np.isneginf(logits[0, :, 5, :]).all() and np.isneginf(logits[1, :, 3, 2]).all()


def test_multiple_choice_scores_each_choice_independently():
    model = MultipleChoice(CONFIG)
    choices = np.stack([IDS, IDS[::-1], IDS], axis=1)            # [batch=2, choices=3, length=6]
    params = nn.unbox(model.init(jax.random.key(0), choices))["params"]
    scores = np.asarray(model.apply({"params": params}, choices))
    assert scores.shape == (2, 3)
    np.testing.assert_allclose(scores[:, 0], scores[:, 2], atol=1e-6)
    cls = _encoder_hidden(params, choices[:, 1])[:, 0]
    np.testing.assert_allclose(scores[:, 1], cls @ np.asarray(params["scorer"]["kernel"])[:, 0]
                               + np.asarray(params["scorer"]["bias"])[0], atol=1e-5)
    with pytest.raises(ValueError, match=r"\[batch, choices, length\]; got shape \(2, 6\)"):
        model.apply({"params": params}, IDS)


def test_mean_pooling_averages_real_tokens_only():
    model = SequenceClassifier(CONFIG, num_labels=2, pooling="mean")
    params = nn.unbox(model.init(jax.random.key(0), IDS))["params"]
    hidden = _encoder_hidden(params)
    valid = (IDS != 0)[..., None]
    pooled = (hidden * valid).sum(1) / valid.sum(1)
    expected = pooled @ np.asarray(params["classifier"]["kernel"]) + np.asarray(params["classifier"]["bias"])
    np.testing.assert_allclose(np.asarray(model.apply({"params": params}, IDS)), expected, atol=1e-5)
    with pytest.raises(ValueError, match="pooling='max'"):
        SequenceClassifier(CONFIG, num_labels=2, pooling="max").init(jax.random.key(0), IDS)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_head_output_shapes_and_dtypes(dtype):
    config = get_preset("roformer_v2_tiny", dtype=dtype)
    choices = np.stack([IDS, IDS], axis=1)
    cases = [(SequenceClassifier(config, num_labels=3), IDS, (2, 3)),
             (SequenceClassifier(config, num_labels=3, pooling="pooler"), IDS, (2, 3)),
             (TokenClassifier(config, num_labels=5), IDS, (2, 6, 5)),
             (SpanClassifier(config, heads=4, head_size=8, efficient=False), IDS, (2, 4, 6, 6)),
             (SpanClassifier(config, heads=4, head_size=8), IDS, (2, 4, 6, 6)),
             (MultipleChoice(config), choices, (2, 2)),
             (MaskedLM(config), IDS, (2, 6, 1000))]
    for model, ids, shape in cases:
        out, _ = jax.eval_shape(lambda m=model, i=ids: m.init_with_output(jax.random.key(0), i))
        chex.assert_shape(out, shape)
        chex.assert_type(out, jnp.float32)
    linker = GPLinker(config, spans=3, links=2, head_size=8)
    outs, _ = jax.eval_shape(lambda: linker.init_with_output(jax.random.key(0), IDS))
    chex.assert_shape(outs, [(2, 3, 6, 6), (2, 2, 6, 6), (2, 2, 6, 6)])
    chex.assert_type(outs, jnp.float32)


ROPE_CONFIG = CONFIG.replace(rope_layout="half", rope_scaling="linear", rope_scaling_factor=2.0)


def _pointer_logits(pointer, params, hidden, rope):
    return np.asarray(pointer.clone(rope=rope).apply({"params": params}, hidden, IDS != 0))


@pytest.mark.parametrize("efficient", [False, True])
def test_span_pointers_rotate_with_the_models_rope_options(efficient):
    model = SpanClassifier(ROPE_CONFIG, heads=3, head_size=8, efficient=efficient)
    params = nn.unbox(model.init(jax.random.key(0), IDS))["params"]
    logits = np.asarray(model.apply({"params": params}, IDS))
    hidden = Encoder(ROPE_CONFIG).apply({"params": params["encoder"]}, IDS)
    pointer = (EfficientGlobalPointer if efficient else GlobalPointer)(heads=3, head_size=8)
    finite = np.isfinite(logits)
    expected = _pointer_logits(pointer, params["pointer"], hidden, ROPE_CONFIG.rope)
    np.testing.assert_allclose(logits[finite], expected[finite], atol=1e-5)
    default = _pointer_logits(pointer, params["pointer"], hidden, RopeOptions())
    assert np.abs(logits[finite] - default[finite]).max() > 1e-2


def test_gplinker_argument_pointer_rotates_with_the_models_rope_options():
    model = GPLinker(ROPE_CONFIG, spans=2, head_size=8)
    params = nn.unbox(model.init(jax.random.key(0), IDS))["params"]
    spans = np.asarray(model.apply({"params": params}, IDS)[0])
    hidden = Encoder(ROPE_CONFIG).apply({"params": params["encoder"]}, IDS)
    expected = _pointer_logits(EfficientGlobalPointer(heads=2, head_size=8), params["spans"], hidden,
                               ROPE_CONFIG.rope)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isfinite(spans), finite)
    np.testing.assert_allclose(spans[finite], expected[finite], atol=1e-5)
