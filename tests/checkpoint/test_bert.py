"""BERT (Google / HFL RoBERTa-wwm-ext layout): Hugging Face and bert4keras checkpoints, both directions."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from rofjax.checkpoint import (
    CheckpointMismatchError,
    load_bert4keras,
    load_huggingface,
    save_bert4keras,
    save_huggingface,
)
from rofjax.checkpoint.bert4keras import convert_bert4keras, read_tf_checkpoint, to_bert4keras
from rofjax.checkpoint.huggingface import convert_huggingface, to_huggingface
from rofjax.checkpoint.tree import flatten
from rofjax.models import Encoder, ModelConfig, get_preset
from tests.checkpoint.test_bert4keras import IDS, SEGMENTS

MASK = IDS != 0
# Google's bert_config.json keys (chinese_L-12_H-768_A-12, shrunk), extra keys included.
GOOGLE_CONFIG = dict(attention_probs_dropout_prob=0.1, directionality="bidi", hidden_act="gelu",
                     hidden_dropout_prob=0.1, hidden_size=24, initializer_range=0.02, intermediate_size=40,
                     max_position_embeddings=16, num_attention_heads=3, num_hidden_layers=2, pooler_fc_size=24,
                     pooler_num_attention_heads=3, pooler_num_fc_layers=3, pooler_size_per_head=8,
                     pooler_type="first_token_transform", type_vocab_size=2, vocab_size=50)
CONFIG = ModelConfig.from_bert_config(GOOGLE_CONFIG, "bert")


def google_weights(rng, bert_config=GOOGLE_CONFIG, scale=0.2):
    """Random tensors under the names of Google's BERT checkpoints, NSP head included."""
    V, H, F = bert_config["vocab_size"], bert_config["hidden_size"], bert_config["intermediate_size"]
    shapes = {"bert/embeddings/word_embeddings": (V, H), "bert/embeddings/token_type_embeddings": (2, H),
              "bert/embeddings/position_embeddings": (bert_config["max_position_embeddings"], H),
              "bert/embeddings/LayerNorm/gamma": (H,), "bert/embeddings/LayerNorm/beta": (H,),
              "bert/pooler/dense/kernel": (H, H), "bert/pooler/dense/bias": (H,),
              "cls/predictions/transform/dense/kernel": (H, H), "cls/predictions/transform/dense/bias": (H,),
              "cls/predictions/transform/LayerNorm/gamma": (H,), "cls/predictions/transform/LayerNorm/beta": (H,),
              "cls/predictions/output_bias": (V,),
              "cls/seq_relationship/output_weights": (2, H), "cls/seq_relationship/output_bias": (2,)}
    for i in range(bert_config["num_hidden_layers"]):
        p = f"bert/encoder/layer_{i}/"
        for sub in ("attention/self/query", "attention/self/key", "attention/self/value", "attention/output/dense"):
            shapes.update({f"{p}{sub}/kernel": (H, H), f"{p}{sub}/bias": (H,)})
        shapes.update({p + "intermediate/dense/kernel": (H, F), p + "intermediate/dense/bias": (F,),
                       p + "output/dense/kernel": (F, H), p + "output/dense/bias": (H,)})
        for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes.update({f"{p}{norm}/gamma": (H,), f"{p}{norm}/beta": (H,)})
    return {name: (rng.normal(0.0, scale, shape) + (1.0 if name.endswith("gamma") else 0.0)).astype(np.float32)
            for name, shape in shapes.items()}


def google_to_hf(weights):
    """Google TF names → transformers `BertForPreTraining` state dict (written out independently of rofjax)."""
    state = {}
    for name, value in weights.items():
        if name == "cls/seq_relationship/output_weights":
            state["cls.seq_relationship.weight"] = value                     # stored (out, in) already
            continue
        key = name.replace("/", ".").replace("layer_", "layer.").replace("output_bias", "bias")
        key = key.replace("gamma", "weight").replace("beta", "bias").replace("kernel", "weight")
        if key.endswith("_embeddings"):
            key += ".weight"
        state[key] = value.T if name.endswith("kernel") else value
    state["cls.predictions.decoder.weight"] = weights["bert/embeddings/word_embeddings"]
    state["cls.predictions.decoder.bias"] = weights["cls/predictions/output_bias"]
    return state


def _forward(config, params):
    """Hidden states, MLM logits and pooled [CLS] of our model (one compiled program: fast on a cold cache)."""
    model = Encoder(config)

    @jax.jit
    def run(params):
        hidden = model.apply({"params": params}, IDS, SEGMENTS)
        logits = model.apply({"params": params}, hidden, method=Encoder.mlm_logits)
        pooled = model.apply({"params": params}, hidden, method=Encoder.pool) if "pooler" in params else None
        return hidden, logits, pooled

    return tuple(None if a is None else np.asarray(a) for a in run(params))


def _random_params(config, rng, scale=0.2):
    """N(0, scale²) values for every parameter of `config`'s encoder and MLM head."""
    shapes = jax.eval_shape(lambda: nn.unbox(Encoder(config).init(jax.random.key(0), jnp.ones((1, 4), jnp.int32),
                                                                 method=Encoder.masked_lm))["params"])
    return jax.tree_util.tree_map(lambda s: rng.normal(0, scale, s.shape).astype(np.float32), shapes)


def _assert_trees_equal(a, b):
    flat_a, flat_b = flatten(a), flatten(b)
    assert flat_a.keys() == flat_b.keys()
    for key in flat_a:
        np.testing.assert_array_equal(np.asarray(flat_a[key]), np.asarray(flat_b[key]), err_msg=key)


def test_google_names_map_onto_the_bert_tree_and_back(rng):
    weights = google_weights(rng)
    noisy = {**weights, "global_step": np.array(7),
             "bert/embeddings/position_embeddings/adam_m": np.zeros_like(weights["bert/embeddings/position_embeddings"])}
    params, report = convert_bert4keras(noisy, CONFIG)
    assert not report.unused and {"mlm", "pooler"} <= set(params)
    assert sorted(report.skipped) == ["bert/embeddings/position_embeddings/adam_m", "cls/seq_relationship/output_bias",
                                      "cls/seq_relationship/output_weights", "global_step"]
    np.testing.assert_array_equal(params["embeddings"]["position_embeddings"]["embedding"],
                                  weights["bert/embeddings/position_embeddings"])
    back = to_bert4keras(params, CONFIG)
    assert back.keys() == weights.keys() - {"cls/seq_relationship/output_weights", "cls/seq_relationship/output_bias"}
    assert all(np.array_equal(back[k], weights[k]) for k in back)

    with pytest.raises(CheckpointMismatchError, match=r"not used by a bert model: cls/stray/kernel"):
        convert_bert4keras({**weights, "cls/stray/kernel": np.zeros((2, 2), np.float32)}, CONFIG)
    as_roformer = ModelConfig.from_bert_config(GOOGLE_CONFIG, "roformer")
    with pytest.raises(CheckpointMismatchError, match=r"not used by a roformer model: bert/embeddings/position_emb"):
        convert_bert4keras(weights, as_roformer)
    no_positions = {k: v for k, v in weights.items() if k != "bert/embeddings/position_embeddings"}
    with pytest.raises(CheckpointMismatchError, match="missing tensor 'bert/embeddings/position_embeddings'"):
        convert_bert4keras(no_positions, CONFIG)


def test_tensorflow_checkpoints_google_names_and_our_export(rng, tmp_path):
    tf = pytest.importorskip("tensorflow")
    weights = google_weights(rng)
    # Written as Google's run_pretraining.py leaves it: TF1 variables under their names, NSP head included.
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.Variable(value, name=name) for name, value in weights.items()]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(tmp_path / "bert_model.ckpt"), write_meta_graph=False)
    (tmp_path / "bert_config.json").write_text(json.dumps(GOOGLE_CONFIG))

    config, params, report = load_bert4keras(tmp_path / "bert_model.ckpt", tmp_path / "bert_config.json", "bert",
                                             return_report=True)
    assert config == CONFIG and not report.unused and len(report.skipped) == 2
    expected, _ = convert_bert4keras(weights, CONFIG)
    _assert_trees_equal(params, expected)
    roberta_config, roberta = load_bert4keras(tmp_path / "bert_model.ckpt", tmp_path / "bert_config.json", "roberta")
    assert roberta_config == CONFIG
    _assert_trees_equal(roberta, params)

    prefix = save_bert4keras(params, config, tmp_path / "export")
    written = read_tf_checkpoint(prefix)
    assert written.keys() == {k for k in weights if not k.startswith("cls/seq_relationship/")}
    assert all(np.array_equal(written[k], weights[k]) for k in written)
    again_config, again = load_bert4keras(tmp_path / "export", tmp_path / "export" / "bert_config.json", "bert",
                                          scan_layers=True)
    assert again_config == config.replace(scan_layers=True)
    np.testing.assert_array_equal(again["transformer"]["layers"]["attention"]["q_dense"]["kernel"][1],
                                  weights["bert/encoder/layer_1/attention/self/query/kernel"])


# Hugging Face ---------------------------------------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch"), pytest.importorskip("transformers")


def _hf_inputs(torch):
    return dict(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK.astype(np.int64)),
                token_type_ids=torch.tensor(SEGMENTS))


def _hf_bert(config, cls_name, seed=0):
    torch, transformers = _torch()
    torch.manual_seed(seed)
    hf_config = transformers.BertConfig(**{k: v for k, v in config.to_hf_config().items()
                                           if k not in ("architectures", "model_type")})
    model = getattr(transformers, cls_name)(hf_config).eval()
    with torch.no_grad():                       # random weights everywhere, not the zero biases and unit norms
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if name.endswith("LayerNorm.weight") else 0.0))
    return model


def test_transformers_bert_for_masked_lm_loads_with_parity(tmp_path):
    torch, _ = _torch()
    hf = _hf_bert(CONFIG, "BertForMaskedLM")
    hf.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "model.safetensors").exists()
    config, params, report = load_huggingface(tmp_path, return_report=True)
    assert config == CONFIG and not report.unused and set(params) == {"embeddings", "transformer", "mlm"}
    hidden, logits, _ = _forward(config, params)
    with torch.no_grad():
        out = hf(**_hf_inputs(torch), output_hidden_states=True)
    assert np.abs(hidden[MASK] - out.hidden_states[-1].numpy()[MASK]).max() <= 1e-5
    assert np.abs(logits[MASK] - out.logits.numpy()[MASK]).max() <= 1e-5


def test_bert_for_pretraining_state_dict_skips_nsp_and_buffers(tmp_path):
    """A `pytorch_model.bin` of BertForPreTraining (pooler and NSP head) with the `position_ids` buffer older
    transformers saved; and the same tensors without prefix, as a bare BertModel saves them."""
    torch, transformers = _torch()
    hf = _hf_bert(CONFIG, "BertForPreTraining", seed=1)
    state = dict(hf.state_dict(), **{"bert.embeddings.position_ids": torch.arange(16)[None]})
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(hf.config.to_json_string())
    config, params, report = load_huggingface(tmp_path, return_report=True)
    assert not report.unused and {"bert.embeddings.position_ids", "cls.seq_relationship.weight",
                                  "cls.seq_relationship.bias"} <= set(report.skipped)
    hidden, logits, pooled = _forward(config, params)
    with torch.no_grad():
        out = hf.bert(**_hf_inputs(torch))
        theirs_logits = hf(**_hf_inputs(torch)).prediction_logits.numpy()
    assert np.abs(hidden[MASK] - out.last_hidden_state.numpy()[MASK]).max() <= 1e-5
    assert np.abs(logits[MASK] - theirs_logits[MASK]).max() <= 1e-5
    assert np.abs(pooled - out.pooler_output.numpy()).max() <= 1e-5

    bare = {k[len("bert."):]: v.numpy() for k, v in hf.state_dict().items() if k.startswith("bert.")}
    bare_params, _ = convert_huggingface(bare, config)
    _assert_trees_equal(bare_params, {k: v for k, v in params.items() if k != "mlm"})


def test_google_names_match_transformers_bert(rng):
    """The same random tensors, under Google's names through rofjax and under HF's names in transformers."""
    torch, transformers = _torch()
    weights = google_weights(rng)
    params, _ = convert_bert4keras(weights, CONFIG)
    hf = transformers.BertForPreTraining(transformers.BertConfig(**GOOGLE_CONFIG)).eval()
    result = hf.load_state_dict({k: torch.from_numpy(v) for k, v in google_to_hf(weights).items()}, strict=False)
    assert not result.unexpected_keys and not [k for k in result.missing_keys if not k.endswith("_ids")]
    hidden, logits, pooled = _forward(CONFIG, params)
    with torch.no_grad():
        out = hf(**_hf_inputs(torch), output_hidden_states=True)
    assert np.abs(hidden[MASK] - out.hidden_states[-1].numpy()[MASK]).max() <= 1e-5
    assert np.abs(logits[MASK] - out.prediction_logits.numpy()[MASK]).max() <= 1e-5
    hf_params, _ = convert_huggingface(google_to_hf(weights), CONFIG)
    _assert_trees_equal(hf_params, params)


def test_bert_tiny_export_loads_in_transformers_with_parity(rng, tmp_path):
    torch, transformers = _torch()
    config = get_preset("bert_tiny")
    params = _random_params(config, rng)
    hidden, logits, _ = _forward(config, params)
    save_huggingface(params, config, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "bert"
    hf, info = transformers.BertForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    with torch.no_grad():
        out = hf.eval()(**_hf_inputs(torch), output_hidden_states=True)
    assert np.abs(hidden[MASK] - out.hidden_states[-1].numpy()[MASK]).max() <= 1e-5
    assert np.abs(logits[MASK] - out.logits.numpy()[MASK]).max() <= 1e-5

    again_config, again = load_huggingface(tmp_path)
    assert again_config == config
    _assert_trees_equal(again, params)
    assert to_huggingface(again, config).keys() == to_huggingface(params, config).keys()


def test_convert_command_checks_a_bert_folder_against_transformers_bert_model(tmp_path, capsys):
    from rofjax.cli import main

    _hf_bert(CONFIG, "BertForPreTraining", seed=2).save_pretrained(tmp_path / "src")
    code = main(["convert", "--from", "huggingface", "--checkpoint", str(tmp_path / "src"), "--to", "huggingface",
                 "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "(transformers BertModel)" in captured.out and "skipped 2" in captured.err
    _, params = load_huggingface(tmp_path / "out")
    assert {"mlm", "pooler"} <= set(params)


def test_fairseq_roberta_config_is_refused_clearly(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**CONFIG.to_hf_config(), "model_type": "roberta"}))
    with pytest.raises(ValueError, match="model_type 'roberta'.*BERT checkpoints"):
        load_huggingface(tmp_path)
