import json

import jax
import numpy as np
import pytest

from rofjax.checkpoint import CheckpointMismatchError, load_bert4keras, save_bert4keras
from rofjax.checkpoint.bert4keras import convert_bert4keras, read_tf_checkpoint, to_bert4keras
from rofjax.models import Encoder, ModelConfig
from tests import numpy_reference as ref

BERT_CONFIGS = {
    "roformer": dict(vocab_size=50, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                     intermediate_size=40, hidden_act="gelu", type_vocab_size=2, embedding_size=16),
    "roformer_v2": dict(vocab_size=50, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                        intermediate_size=40, hidden_act="relu", type_vocab_size=2),
    "gau_alpha": dict(vocab_size=50, hidden_size=24, num_hidden_layers=3, num_attention_heads=1,
                      intermediate_size=32, attention_key_size=16, hidden_act="swish", type_vocab_size=2),
}
IDS = np.array([[2, 9, 17, 33, 4, 0, 0], [2, 5, 48, 3, 11, 41, 6]])
SEGMENTS = np.array([[0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1, 1]])


def _valid(a):
    return a[IDS != 0]


@pytest.mark.parametrize("family", list(BERT_CONFIGS))
def test_converted_published_layout_matches_reference_forward(rng, family):
    bert_config = BERT_CONFIGS[family]
    weights = ref.bert4keras_weights(family, bert_config, rng)
    config = ModelConfig.from_bert_config(bert_config, family)
    params, report = convert_bert4keras(weights, config)
    assert not report.unused and len(report.loaded) == len(weights)
    hidden = Encoder(config).apply({"params": params}, IDS, SEGMENTS)
    expected = ref.encoder_forward(weights, family, bert_config, IDS, SEGMENTS)
    assert hidden.shape == IDS.shape + (bert_config["hidden_size"],)
    np.testing.assert_allclose(_valid(np.asarray(hidden)), _valid(expected), atol=1e-5, rtol=1e-5)

    scanned_config = config.replace(scan_layers=True)
    scanned, _ = convert_bert4keras(weights, scanned_config)
    np.testing.assert_allclose(np.asarray(Encoder(scanned_config).apply({"params": scanned}, IDS, SEGMENTS)),
                               np.asarray(hidden), atol=1e-6)

    back = to_bert4keras(params, config)
    assert back.keys() == weights.keys()
    assert all(np.array_equal(back[k], weights[k]) for k in weights)
    assert to_bert4keras(scanned, scanned_config).keys() == weights.keys()


def test_mlm_head_and_pooler_are_taken_when_present(rng):
    bert_config = BERT_CONFIGS["roformer"]
    weights = ref.bert4keras_weights("roformer", bert_config, rng, with_mlm=True)
    weights["bert/pooler/dense/kernel"] = rng.normal(size=(24, 24)).astype(np.float32)
    weights["bert/pooler/dense/bias"] = rng.normal(size=(24,)).astype(np.float32)
    config = ModelConfig.from_bert_config(bert_config, "roformer")
    params, _ = convert_bert4keras(weights, config)
    assert {"mlm", "pooler"} <= set(params)
    model = Encoder(config)
    hidden = model.apply({"params": params}, IDS)
    logits = np.asarray(model.apply({"params": params}, hidden, method=Encoder.mlm_logits))
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    h = ref.gelu(np.asarray(hidden, np.float64) @ w["cls/predictions/transform/dense/kernel"]
                 + w["cls/predictions/transform/dense/bias"])
    h = ref.layer_norm(h, w["cls/predictions/transform/LayerNorm/gamma"], w["cls/predictions/transform/LayerNorm/beta"])
    expected = h @ w["bert/embeddings/word_embeddings"].T + w["cls/predictions/output_bias"]
    np.testing.assert_allclose(logits, expected, atol=2e-5, rtol=1e-5)
    assert to_bert4keras(params, config).keys() == weights.keys()


def test_wrong_model_or_shape_names_the_first_tensor(rng):
    v2_weights = ref.bert4keras_weights("roformer_v2", BERT_CONFIGS["roformer_v2"], rng)
    as_v1 = ModelConfig.from_bert_config(BERT_CONFIGS["roformer_v2"], "roformer")
    with pytest.raises(CheckpointMismatchError, match="missing tensor 'bert/embeddings/LayerNorm/beta'"):
        convert_bert4keras(v2_weights, as_v1)
    v1_config = {**BERT_CONFIGS["roformer"], "embedding_size": 24}
    v1_weights = ref.bert4keras_weights("roformer", v1_config, rng)
    with pytest.raises(CheckpointMismatchError, match=r"not used by a roformer_v2 model: .*attention/output/LayerNorm"):
        convert_bert4keras(v1_weights, ModelConfig.from_bert_config(v1_config, "roformer_v2"))
    bigger = ModelConfig.from_bert_config({**BERT_CONFIGS["roformer_v2"], "intermediate_size": 48}, "roformer_v2")
    with pytest.raises(CheckpointMismatchError,
                       match=r"'bert/encoder/layer_0/intermediate/dense/kernel' has shape \(24, 40\).*\(24, 48\)"):
        convert_bert4keras(v2_weights, bigger)
    lenient, report = convert_bert4keras(v1_weights, ModelConfig.from_bert_config(v1_config, "roformer_v2"),
                                         strict=False)
    assert "bert/encoder/layer_0/attention/self/query/bias" in report.unused and "embeddings" in lenient


@pytest.mark.parametrize("names_order", ["iqko_names_over_ioqk_weights", "ioqk_names_over_iqko_weights"])
def test_gau_alpha_sublayer_order_is_repaired(rng, names_order):
    bert_config = BERT_CONFIGS["gau_alpha"]
    weights = ref.bert4keras_weights("gau_alpha", bert_config, rng)
    shuffled = dict(weights)
    for i in range(bert_config["num_hidden_layers"]):
        p = f"GAU_alpha/encoder/layer_{i}/gau/"
        q, k, o = (weights[p + n] for n in ("q_scaleoffset/gamma", "k_scaleoffset/gamma", "o_dense/kernel"))
        if names_order == "iqko_names_over_ioqk_weights":    # mapping i,q,k,o paired with weights i,o,q,k
            shuffled.update({p + "q_scaleoffset/gamma": o, p + "k_scaleoffset/gamma": q, p + "o_dense/kernel": k})
        else:                                                 # mapping i,o,q,k paired with weights i,q,k,o
            shuffled.update({p + "o_dense/kernel": q, p + "q_scaleoffset/gamma": k, p + "k_scaleoffset/gamma": o})
    config = ModelConfig.from_bert_config(bert_config, "gau_alpha")
    repaired, report = convert_bert4keras(shuffled, config)
    reference, _ = convert_bert4keras(weights, config)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, repaired, reference))
    assert len(report.notes) == bert_config["num_hidden_layers"]


def test_optimizer_slots_are_skipped(rng):
    weights = ref.bert4keras_weights("roformer_v2", BERT_CONFIGS["roformer_v2"], rng)
    noisy = {**weights, "global_step": np.array(7), "bert/embeddings/word_embeddings/adam_m": np.zeros((50, 24)),
             "bert/embeddings/word_embeddings/adam_v": np.zeros((50, 24))}
    _, report = convert_bert4keras(noisy, ModelConfig.from_bert_config(BERT_CONFIGS["roformer_v2"], "roformer_v2"))
    assert sorted(report.skipped) == sorted(set(noisy) - set(weights)) and not report.unused


@pytest.mark.parametrize("family", list(BERT_CONFIGS))
def test_tensorflow_checkpoint_round_trip(rng, tmp_path, family):
    tf = pytest.importorskip("tensorflow")
    bert_config = BERT_CONFIGS[family]
    weights = ref.bert4keras_weights(family, bert_config, rng)
    # Written the way bert4keras's save_weights_as_checkpoint does: TF1 variables under their names, Saver.
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.Variable(value, name=name) for name, value in weights.items()]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(tmp_path / "bert_model.ckpt"), write_meta_graph=False)
    (tmp_path / "bert_config.json").write_text(json.dumps(bert_config))

    config, params = load_bert4keras(tmp_path / "bert_model.ckpt", tmp_path / "bert_config.json", family)
    hidden = np.asarray(Encoder(config).apply({"params": params}, IDS, SEGMENTS))
    expected = ref.encoder_forward(weights, family, bert_config, IDS, SEGMENTS)
    np.testing.assert_allclose(_valid(hidden), _valid(expected), atol=1e-5, rtol=1e-5)

    prefix = save_bert4keras(params, config, tmp_path / "export")
    written = read_tf_checkpoint(prefix)
    assert written.keys() == weights.keys()
    assert all(np.array_equal(written[k], weights[k]) for k in weights)
    again_config, again = load_bert4keras(tmp_path / "export", tmp_path / "export" / "bert_config.json", family,
                                          scan_layers=True)
    assert again_config == config.replace(scan_layers=True)
    np.testing.assert_allclose(np.asarray(Encoder(again_config).apply({"params": again}, IDS, SEGMENTS)), hidden,
                               atol=1e-6)


def test_missing_checkpoint_and_unknown_model_fail_clearly(tmp_path):
    (tmp_path / "bert_config.json").write_text(json.dumps(BERT_CONFIGS["roformer_v2"]))
    with pytest.raises(ValueError, match="Unknown model 'roformer_v3'"):
        load_bert4keras(tmp_path / "bert_model.ckpt", tmp_path / "bert_config.json", "roformer_v3")
    pytest.importorskip("tensorflow")
    with pytest.raises(FileNotFoundError, match="bert_model.ckpt.index"):
        load_bert4keras(tmp_path / "bert_model.ckpt", tmp_path / "bert_config.json", "roformer_v2")
