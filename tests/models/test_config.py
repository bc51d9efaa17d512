import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from rofjax.models import PRESETS, Encoder, ModelConfig, get_preset
from rofjax.nn.rope import RopeOptions

PUBLISHED_PARAMETER_COUNTS = {            # seeds-spec §3.3 and §4.2 (encoder without the tied MLM output)
    "roformer_v2_chinese_char_small": 15_225_600,
    "roformer_v2_chinese_char_base": 94_152_192,
    "roformer_v2_chinese_char_large": 314_279_936,
    "gau_alpha_chinese_char_base": 96_517_632,
}


def _count(config):
    shapes = jax.eval_shape(lambda: nn.unbox(Encoder(config).init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(shapes))


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETER_COUNTS))
def test_preset_parameter_counts_equal_published(name):
    assert _count(get_preset(name)) == PUBLISHED_PARAMETER_COUNTS[name]


def test_roformer_v1_base_count_follows_bert_arithmetic():
    config = get_preset("roformer_chinese_char_base")
    V, H, F, L = 12000, 768, 3072, 12
    per_layer = 4 * (H * H + H) + 2 * H + (H * F + F) + (F * H + H) + 2 * H
    assert _count(config) == V * H + 2 * H + 2 * H + L * per_layer


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_published_config_files(name, tmp_path):
    config = PRESETS[name]
    assert ModelConfig.from_bert_config(config.to_bert_config(), config.family) == config
    assert ModelConfig.from_hf_config(config.to_hf_config()) == config
    path = tmp_path / "config.json"
    config.to_json(path)
    assert ModelConfig.from_json(path) == config


def test_bert_config_file_with_extra_keys(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps({"vocab_size": 12000, "hidden_size": 384, "num_hidden_layers": 6,
                                "num_attention_heads": 6, "intermediate_size": 1536, "hidden_act": "relu",
                                "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                                "max_position_embeddings": 512, "type_vocab_size": 2, "directionality": "bidi"}))
    assert ModelConfig.from_bert_config(path, "roformer_v2") == get_preset("roformer_v2_chinese_char_small")


def test_invalid_configs_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="norm_position='middle'"):
        get_preset("roformer_tiny", norm_position="middle")
    with pytest.raises(ValueError, match="hidden_act='gleu'"):
        get_preset("roformer_tiny", hidden_act="gleu")
    with pytest.raises(KeyError, match="num_layer"):
        get_preset("roformer_tiny", num_layer=3)
    with pytest.raises(KeyError, match="Unknown model preset 'roformer_huge'"):
        get_preset("roformer_huge")
    with pytest.raises(ValueError, match="divisible"):
        get_preset("roformer_tiny", num_heads=5)
    bad = tmp_path / "broken.json"
    bad.write_text('{"vocab_size": 3,,}')
    with pytest.raises(ValueError, match=r"broken.json: not valid JSON \(line 1"):
        ModelConfig.from_json(bad)
    with pytest.raises(KeyError, match="missing key"):
        ModelConfig.from_bert_config({"vocab_size": 3}, "roformer")
    with pytest.raises(KeyError, match=r"missing key\(s\) \['hidden_size'"):
        ModelConfig.from_hf_config({"vocab_size": 3, "model_type": "roformer"})


def test_model_config_files_without_rope_options_load_with_todays_rope(tmp_path):
    config = get_preset("roformer_v2_tiny")
    older = {k: v for k, v in config.to_dict().items() if k not in ("rope_layout", "rope_scaling",
                                                                    "rope_scaling_factor")}
    path = tmp_path / "model_config.json"
    path.write_text(json.dumps(older))
    loaded = ModelConfig.from_json(path)
    assert loaded == config
    assert (loaded.rope_layout, loaded.rope_scaling, loaded.rope_scaling_factor) == ("interleaved", "none", 1.0)


def test_rope_options_round_trip_and_are_checked(tmp_path):
    config = get_preset("gau_alpha_tiny", rope_base=20000.0, rope_layout="half", rope_scaling="ntk",
                        rope_scaling_factor=4.0)
    path = tmp_path / "model_config.json"
    config.to_json(path)
    assert ModelConfig.from_json(path) == config
    assert config.rope == RopeOptions(base=20000.0, layout="half", scaling="ntk", scaling_factor=4.0)
    with pytest.raises(ValueError, match=r"rope_layout='rotate' \(expected one of.*rope_scaling_factor=0 \(must"):
        get_preset("roformer_tiny", rope_layout="rotate", rope_scaling_factor=0)
    with pytest.raises(ValueError, match="rope_scaling='yarn'"):
        get_preset("roformer_tiny", rope_scaling="yarn")


@pytest.mark.parametrize("rope", [dict(rope_layout="half"), dict(rope_scaling="linear", rope_scaling_factor=2.0),
                                  dict(rope_base=500.0)])
def test_published_config_files_refuse_rope_options_they_cannot_hold(rope):
    config = get_preset("roformer_tiny", **rope)
    with pytest.raises(ValueError, match="bert_config.json cannot hold RoPE options"):
        config.to_bert_config()
    with pytest.raises(ValueError, match="Hugging Face config.json cannot hold RoPE options"):
        config.to_hf_config()
