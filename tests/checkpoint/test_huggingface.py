import json

import numpy as np
import pytest

from rofjax.checkpoint import CheckpointMismatchError, load_huggingface, save_huggingface
from rofjax.checkpoint.bert4keras import convert_bert4keras
from rofjax.checkpoint.huggingface import convert_huggingface, read_state_dict, to_huggingface
from rofjax.checkpoint.tree import expected_shapes, flatten, unflatten
from rofjax.models import Encoder, ModelConfig, get_preset
from tests import numpy_reference as ref
from tests.checkpoint.test_bert4keras import BERT_CONFIGS, IDS, SEGMENTS

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

MASK = IDS != 0


def _hf_model(config: ModelConfig, cls_name="RoFormerModel", seed=0):
    torch.manual_seed(seed)
    hf_config = transformers.RoFormerConfig(**{k: v for k, v in config.to_hf_config().items()
                                               if k not in ("architectures", "model_type")})
    model = getattr(transformers, cls_name)(hf_config).eval()
    with torch.no_grad():                       # random weights everywhere, not the zero biases and unit norms
        for name, p in model.named_parameters():
            if "embed_positions" not in name:
                p.copy_(torch.randn_like(p) * 0.2 + (1.0 if name.endswith("LayerNorm.weight") else 0.0))
    return model


@pytest.mark.parametrize("embedding_size", [None, 16])
def test_parity_with_transformers_roformer_model(tmp_path, embedding_size):
    config = get_preset("roformer_tiny", vocab_size=50, embedding_size=embedding_size)
    hf = _hf_model(config)
    hf.save_pretrained(tmp_path)
    loaded_config, params = load_huggingface(tmp_path)
    assert loaded_config == config
    ours = np.asarray(Encoder(loaded_config).apply({"params": params}, IDS, SEGMENTS))
    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK.astype(np.int64)),
                    token_type_ids=torch.tensor(SEGMENTS)).last_hidden_state.numpy()
    assert np.abs(ours[MASK] - theirs[MASK]).max() <= 1e-5


def test_masked_lm_parity_and_export_loads_back_in_transformers(tmp_path):
    config = get_preset("roformer_tiny", vocab_size=50)
    hf = _hf_model(config, "RoFormerForMaskedLM")
    hf.save_pretrained(tmp_path / "source")
    loaded_config, params = load_huggingface(tmp_path / "source")
    assert "mlm" in params
    model = Encoder(loaded_config)
    logits = np.asarray(model.apply({"params": params}, IDS, SEGMENTS, method=Encoder.masked_lm))
    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK.astype(np.int64)),
                    token_type_ids=torch.tensor(SEGMENTS)).logits.numpy()
    assert np.abs(logits[MASK] - theirs[MASK]).max() <= 1e-4

    save_huggingface(params, loaded_config, tmp_path / "export")
    _, again = load_huggingface(tmp_path / "export")
    flat_a, flat_b = to_huggingface(params, loaded_config), to_huggingface(again, loaded_config)
    assert flat_a.keys() == flat_b.keys() and all(np.array_equal(flat_a[k], flat_b[k]) for k in flat_a)
    reloaded, info = transformers.RoFormerForMaskedLM.from_pretrained(tmp_path / "export", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    reloaded.eval()
    with torch.no_grad():
        again_logits = reloaded(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK.astype(np.int64)),
                                token_type_ids=torch.tensor(SEGMENTS)).logits.numpy()
    np.testing.assert_array_equal(again_logits, theirs)


def test_pytorch_bin_and_bare_model_keys(tmp_path):
    config = get_preset("roformer_tiny", vocab_size=50)
    hf = _hf_model(config)
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")    # a bare RoFormerModel: no "roformer." prefix
    (tmp_path / "config.json").write_text(hf.config.to_json_string())
    state = read_state_dict(tmp_path)
    assert not any(k.startswith("roformer.") for k in state)
    _, params = load_huggingface(tmp_path)
    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK.astype(np.int64))).last_hidden_state
    ours = np.asarray(Encoder(config).apply({"params": params}, IDS))
    assert np.abs(ours[MASK] - theirs.numpy()[MASK]).max() <= 1e-5


@pytest.mark.parametrize("family", ["roformer_v2", "gau_alpha"])
def test_junnyu_naming_matches_bert4keras_weights(rng, family):
    """JunnYu's PyTorch ports carry the bert4keras tensors under HF-style names, kernels transposed."""
    bert_config = BERT_CONFIGS[family]
    weights = ref.bert4keras_weights(family, bert_config, rng)
    prefix = "gau_alpha." if family == "gau_alpha" else "roformer."
    state = {}
    for name, value in weights.items():
        key = name.replace("GAU_alpha/", "bert/").replace("bert/", prefix).replace("/", ".")
        key = key.replace("layer_", "layer.").replace("word_embeddings", "word_embeddings.weight")
        key = key.replace("token_type_embeddings", "token_type_embeddings.weight")
        key = key.replace(".kernel", ".weight").replace(".gamma", ".weight")
        state[key] = value.T if name.endswith("kernel") else value
    state["cls.predictions.decoder.weight"] = weights["bert/embeddings/word_embeddings"]
    config = ModelConfig.from_bert_config(bert_config, family)
    from_hf, report = convert_huggingface(state, config)
    from_b4k, _ = convert_bert4keras(weights, config)
    assert report.skipped == ["cls.predictions.decoder.weight"]
    a = np.asarray(Encoder(config).apply({"params": from_hf}, IDS))
    b = np.asarray(Encoder(config).apply({"params": from_b4k}, IDS))
    np.testing.assert_array_equal(a, b)
    untied = dict(state, **{"cls.predictions.decoder.weight": state["cls.predictions.decoder.weight"] + 1})
    with pytest.raises(CheckpointMismatchError, match="decoder.weight differs"):
        convert_huggingface(untied, config)


def test_hf_config_round_trip_for_every_family():
    for name in ("roformer_chinese_base", "roformer_v2_chinese_char_large", "gau_alpha_chinese_char_base"):
        config = get_preset(name)
        assert ModelConfig.from_hf_config(config.to_hf_config()) == config


def _random_params(config, rng):
    shapes = expected_shapes(config, with_heads=False)
    return unflatten({path: rng.normal(0, 0.2, shape).astype(np.float32) for path, (shape, _) in shapes.items()})


@pytest.mark.parametrize("preset", ["roformer_v2_tiny", "gau_alpha_tiny"])
def test_roformer_v2_and_gau_alpha_export_only_for_junnyu(rng, tmp_path, preset):
    """Stock transformers would load a RoFormerV2 export into RoFormerModel with its missing biases and norm gains
    freshly initialised, so the default target refuses; `target="junnyu"` writes JunnYu's model types."""
    config = get_preset(preset, vocab_size=50)
    params = _random_params(config, rng)
    with pytest.raises(ValueError, match=rf"a {config.family} export is not a stock transformers model.*"
                                         r"target='junnyu'"):
        save_huggingface(params, config, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()

    save_huggingface(params, config, tmp_path / "junnyu", target="junnyu")
    written = json.loads((tmp_path / "junnyu" / "config.json").read_text())
    assert written["model_type"] == config.family
    again_config, again = load_huggingface(tmp_path / "junnyu")
    assert again_config == config
    flat, flat_again = flatten(params), flatten(again)
    assert flat.keys() == flat_again.keys() and all(np.array_equal(flat[k], flat_again[k]) for k in flat)
    if config.family == "roformer_v2":          # JunnYu's hub configs: model_type "roformer" with norm_type rms_norm
        written.update(model_type="roformer", norm_type="rms_norm")
        (tmp_path / "junnyu" / "config.json").write_text(json.dumps(written))
        assert load_huggingface(tmp_path / "junnyu")[0] == config


def test_unknown_or_unfit_export_target_is_refused(rng, tmp_path):
    bert = get_preset("bert_tiny")
    with pytest.raises(ValueError, match="JunnYu's packages have no BERT"):
        save_huggingface({}, bert, tmp_path / "a", target="junnyu")
    with pytest.raises(ValueError, match="Unknown Hugging Face export target 'pytorch'"):
        save_huggingface({}, bert, tmp_path / "b", target="pytorch")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
