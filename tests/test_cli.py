import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from rofjax.checkpoint import load_huggingface, load_model_config, restore_params
from rofjax.cli import main
from rofjax.models import Encoder
from tests import numpy_reference as ref
from tests.checkpoint.test_bert4keras import BERT_CONFIGS, IDS


def _write_tf_checkpoint(folder, weights):
    tf = pytest.importorskip("tensorflow")
    names = sorted(weights)
    tf.raw_ops.SaveV2(prefix=str(folder / "bert_model.ckpt"), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(weights[n]) for n in names])


def test_convert_bert4keras_to_rofjax_and_on_to_huggingface(rng, tmp_path, capsys):
    family = "gau_alpha"
    weights = ref.bert4keras_weights(family, BERT_CONFIGS[family], rng)
    _write_tf_checkpoint(tmp_path, weights)
    (tmp_path / "bert_config.json").write_text(json.dumps(BERT_CONFIGS[family]))
    code = main(["convert", "--from", "bert4keras", "--model", family, "--config", str(tmp_path / "bert_config.json"),
                 "--checkpoint", str(tmp_path / "bert_model.ckpt"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and "parity: max |Δ| = 0 " in out
    config = load_model_config(tmp_path / "out")
    hidden = np.asarray(Encoder(config).apply({"params": restore_params(tmp_path / "out")}, IDS))
    expected = ref.encoder_forward(weights, family, BERT_CONFIGS[family], IDS)
    np.testing.assert_allclose(hidden[IDS != 0], expected[IDS != 0], atol=1e-5)

    code = main(["convert", "--from", "rofjax", "--checkpoint", str(tmp_path / "out"), "--to", "huggingface",
                 "--out", str(tmp_path / "hf")])
    assert code == 0 and "parity" in capsys.readouterr().out
    hf_config, hf_params = load_huggingface(tmp_path / "hf")
    np.testing.assert_array_equal(np.asarray(Encoder(hf_config).apply({"params": hf_params}, IDS)), hidden)


def test_convert_with_the_wrong_model_names_the_first_mismatched_tensor(rng, tmp_path, capsys):
    weights = ref.bert4keras_weights("roformer_v2", BERT_CONFIGS["roformer_v2"], rng)
    _write_tf_checkpoint(tmp_path, weights)
    (tmp_path / "bert_config.json").write_text(json.dumps(BERT_CONFIGS["roformer_v2"]))
    code = main(["convert", "--from", "bert4keras", "--model", "roformer", "--config",
                 str(tmp_path / "bert_config.json"), "--checkpoint", str(tmp_path / "bert_model.ckpt"),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "missing tensor 'bert/embeddings/LayerNorm/beta'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_console_script_is_installed():
    script = pathlib.Path(sys.executable).with_name("rofjax")
    if not script.exists():
        pytest.skip(f"no rofjax console script beside {sys.executable} (package not pip-installed)")
    out = subprocess.run([str(script), "convert", "--help"], capture_output=True, text=True, check=True)
    assert "--from" in out.stdout and "bert4keras" in out.stdout
