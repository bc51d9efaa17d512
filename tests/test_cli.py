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
                 "--hf-target", "junnyu", "--out", str(tmp_path / "hf")])
    assert code == 0 and "parity" in capsys.readouterr().out
    hf_config, hf_params = load_huggingface(tmp_path / "hf")
    np.testing.assert_array_equal(np.asarray(Encoder(hf_config).apply({"params": hf_params}, IDS)), hidden)


def test_convert_to_huggingface_refuses_roformer_v2_without_hf_target_junnyu(rng, tmp_path, capsys):
    from rofjax.checkpoint import save_huggingface
    from rofjax.checkpoint.bert4keras import convert_bert4keras
    from rofjax.models import ModelConfig

    config = ModelConfig.from_bert_config(BERT_CONFIGS["roformer_v2"], "roformer_v2")
    params, _ = convert_bert4keras(ref.bert4keras_weights("roformer_v2", BERT_CONFIGS["roformer_v2"], rng), config)
    save_huggingface(params, config, tmp_path / "src", target="junnyu")
    args = ["convert", "--from", "huggingface", "--checkpoint", str(tmp_path / "src"), "--to", "huggingface"]
    code = main(args + ["--out", str(tmp_path / "out")])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2 and len(err) == 1 and "--hf-target junnyu" in err[0] and "roformer_v2" in err[0]
    assert not (tmp_path / "out").exists()
    code = main(args + ["--hf-target", "junnyu", "--out", str(tmp_path / "out")])
    assert code == 0 and "parity: max |Δ| = 0 " in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "roformer_v2"


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


def _save_tiny(folder, params_preset, config_preset):
    import jax
    import jax.numpy as jnp

    from rofjax.checkpoint import save_params
    from rofjax.models.config import get_preset

    params = Encoder(get_preset(params_preset)).init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"]
    save_params(folder, params, get_preset(config_preset))
    return folder


def test_convert_refuses_parameters_of_another_family_before_writing(tmp_path, capsys):
    source = _save_tiny(tmp_path / "src", "roformer_v2_tiny", "gau_alpha_tiny")
    code = main(["convert", "--from", "rofjax", "--checkpoint", str(source), "--out", str(tmp_path / "out" / "ckpt")])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing tensor 'transformer/layer_0/gau/" in err
    assert str(source / "params") in err and str(source / "model_config.json") in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def _save_tiny_computing_nan(folder):
    import jax
    import jax.numpy as jnp
    from flax import linen as nn

    from rofjax.checkpoint import save_params
    from rofjax.models.config import get_preset

    config = get_preset("roformer_v2_tiny")
    params = nn.unbox(Encoder(config).init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"])
    params["embeddings"]["word_embeddings"]["embedding"] = \
        params["embeddings"]["word_embeddings"]["embedding"].at[:, 0].set(jnp.nan)
    save_params(folder, params, config)
    return folder


def test_convert_of_a_checkpoint_computing_nan_writes_nothing(tmp_path, capsys):
    source = _save_tiny_computing_nan(tmp_path / "src")
    code = main(["convert", "--from", "rofjax", "--checkpoint", str(source), "--out", str(tmp_path / "o")])
    assert code == 1                                # NaN is not within any tolerance: it was moved into place before
    assert "parity nan is not a number" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    for tolerance in ("nan", "-1"):
        with pytest.raises(SystemExit):
            main(["convert", "--from", "rofjax", "--checkpoint", str(source), "--out", str(tmp_path / "o"),
                  "--tolerance", tolerance])
        assert f"--tolerance: {tolerance} is not a finite number ≥ 0" in capsys.readouterr().err
    code = main(["convert", "--from", "rofjax", "--checkpoint", str(source / "model_config.json"), "--out",
                 str(tmp_path / "o")])
    assert code == 2 and "model_config.json is a file; give the folder" in capsys.readouterr().err
    code = main(["convert", "--from", "rofjax", "--checkpoint", str(source), "--out",
                 str(source / "model_config.json" / "sub")])
    assert code == 2 and "model_config.json is a file, so no folder can be made under it" in capsys.readouterr().err


def test_convert_into_an_existing_folder_needs_overwrite(tmp_path, capsys):
    source = _save_tiny(tmp_path / "src", "roformer_v2_tiny", "roformer_v2_tiny")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    code = main(["convert", "--from", "rofjax", "--checkpoint", str(source), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite" in err and "overwrite=True" not in err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]

    # A parity failure must leave the old folder untouched and no staging folder beside it.
    failing = _save_tiny_computing_nan(tmp_path / "nan_src")
    code = main(["convert", "--from", "rofjax", "--checkpoint", str(failing), "--out", str(out), "--overwrite"])
    assert code == 1 and "nothing written" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan_src", "out", "src"]

    code = main(["convert", "--from", "rofjax", "--checkpoint", str(source), "--out", str(out), "--overwrite"])
    assert code == 0 and "parity: max |Δ| = 0 " in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["model_config.json", "params"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan_src", "out", "src"]
    np.testing.assert_array_equal(
        np.asarray(restore_params(out)["embeddings"]["word_embeddings"]["embedding"]),
        np.asarray(restore_params(source)["embeddings"]["word_embeddings"]["embedding"]))


def test_convert_of_a_truncated_parameter_file_reports_one_line_naming_the_source(tmp_path, capsys):
    source = _save_tiny(tmp_path / "src", "gau_alpha_tiny", "gau_alpha_tiny")
    biggest = max((p for p in (source / "params").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    with open(biggest, "r+b") as f:
        f.truncate(100)
    code = main(["convert", "--from", "rofjax", "--checkpoint", str(source), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if "rofjax convert: error:" in line]
    assert len(lines) == 1 and f"cannot read rofjax checkpoint {source}" in lines[0]
    assert "Traceback" not in err and len(err.strip().split("\n")) <= 2
    assert not (tmp_path / "out").exists()


def test_bundled_configs_are_found_by_name(tmp_path, capsys):
    from train._errors import bundled_configs, resolve_config

    root = bundled_configs()
    assert resolve_config("clue/tnews") == f"{root}/clue/tnews.py"
    assert resolve_config("clue/tnews.py:small") == f"{root}/clue/tnews.py:small"
    assert resolve_config("peoples_daily_ner") == f"{root}/ie/peoples_daily_ner.py"
    own = tmp_path / "mine.py"
    own.write_text("def get_config(): ...\n")
    assert resolve_config(str(own)) == str(own)
    with pytest.raises(SystemExit) as stop:
        resolve_config("cluener")                   # clue/cluener and ie/cluener
    assert stop.value.code == 2 and "names several" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        resolve_config("clue/nothing")
    assert "bundled configs: clue/afqmc" in capsys.readouterr().err


def test_programs_run_from_any_folder_with_their_flags_in_help(tmp_path):
    help_text = subprocess.run([sys.executable, "-m", "rofjax.cli", "finetune", "--help"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=120)
    assert help_text.returncode == 0, help_text.stderr[-2000:]
    assert "--workdir" in help_text.stdout and "ie/peoples_daily_ner" in help_text.stdout
    assert "pretrain/tiny_mlm" not in help_text.stdout          # only the configs finetune runs are offered
    wrong = subprocess.run([sys.executable, "-m", "rofjax.cli", "pretrain", "--config", "ie/peoples_daily_ner",
                            "--workdir", str(tmp_path / "w")], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert wrong.returncode != 0 and "run it with rofjax finetune" in wrong.stderr


def test_locations_are_local_folders_or_file_urls(tmp_path):
    from rofjax.checkpoint.run import RunFolder, local_path

    assert local_path(f"file://{tmp_path}/a%20b") == f"{tmp_path}/a b"
    assert local_path("relative/run") == str(pathlib.Path("relative/run").resolve())
    assert RunFolder(f"file://{tmp_path}/run").workdir == f"{tmp_path}/run"
    with pytest.raises(ValueError, match="export folder gs://bucket/model: a gs:// location cannot be written to"):
        local_path("gs://bucket/model", "export folder")


@pytest.fixture
def fake_bucket(tmp_path, monkeypatch):
    """gs://bucket/... served from a local folder through etils.epath's own test double (with TensorFlow installed
    epath would send gs:// to TensorFlow's file system instead, so that choice is turned off here)."""
    from etils.epath import gpath, testing

    root = tmp_path / "bucket-storage"
    root.mkdir()
    reads = []

    def local(path):                        # the double serves local paths too (orbax writes through epath)
        text = str(path)
        return str(root / text[len("gs://bucket/"):]) if text.startswith("gs://bucket/") else text

    def redirect(original, path, *args, **kwargs):
        return original(local(path), *args, **kwargs)

    def counted_open(original, path, *args, **kwargs):
        if str(path).startswith("gs://"):
            reads.append(str(path))
        return original(local(path), *args, **kwargs)

    monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
    monkeypatch.setenv("ROFJAX_REMOTE_CACHE", str(tmp_path / "cache"))
    with testing.mock_epath(open=counted_open, exists=redirect, isdir=redirect, listdir=redirect, glob=redirect,
                            walk=redirect, stat=redirect, makedirs=redirect, mkdir=redirect, remove=redirect,
                            rmtree=redirect):
        yield root, reads


def test_checkpoints_and_folders_are_read_from_a_bucket_through_a_checked_local_copy(fake_bucket, tmp_path):
    from rofjax.checkpoint import save_params
    from rofjax.checkpoint.run import readable_path

    root, reads = fake_bucket
    params = {"dense": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    save_params(root / "ckpt", params)
    restored = restore_params("gs://bucket/ckpt")
    np.testing.assert_array_equal(restored["dense"]["kernel"], params["dense"]["kernel"])

    (root / "data").mkdir()
    (root / "data" / "train.jsonl").write_text('{"text": "a", "label": "x"}\n', encoding="utf-8")
    copy = readable_path("gs://bucket/data", "config.data.data_dir")
    assert open(pathlib.Path(copy) / "train.jsonl", encoding="utf-8").read().startswith('{"text"')
    reads.clear()
    assert readable_path("gs://bucket/data") == copy and reads == []          # unchanged: the copy is reused
    (root / "data" / "dev.jsonl").write_text("{}\n", encoding="utf-8")
    assert readable_path("gs://bucket/data") == copy and (pathlib.Path(copy) / "dev.jsonl").exists()
    with pytest.raises(FileNotFoundError, match="gs://bucket/nothing does not exist"):
        readable_path("gs://bucket/nothing", "model folder")


def test_a_run_in_a_bucket_is_mirrored_and_resumes_on_another_machine(fake_bucket, tmp_path, monkeypatch):
    import shutil

    from configs import demo
    from rofjax.checkpoint.mirror import MANIFEST
    from rofjax.export import export, load
    from rofjax.training.loop import run

    root, _ = fake_bucket

    def config(total_steps):
        c = demo.get_config()
        c.unlock()
        c.data.data_dir = str(tmp_path / "tfds")
        c.model.update(num_layers=1, hidden_size=32, num_heads=2, intermediate_size=64)
        c.data.max_length, c.train.batch_size, c.train.progress_bar = 32, 8, False
        c.train.total_steps, c.train.save_every, c.eval.every, c.eval.examples = total_steps, 2, 0, 16
        return c

    run(config(4), "gs://bucket/run")
    bucket = root / "run"
    listed = json.loads((bucket / MANIFEST).read_text())["files"]
    assert "checkpoints/4/state/_METADATA" in listed and "model_config.json" in listed and ".lock" not in listed
    assert all((bucket / name).stat().st_size == size for name, size in listed.items())
    steps = [json.loads(line)["step"] for line in (bucket / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]

    # Another machine: nothing local. A file the list does not name (an upload cut short) is not read.
    shutil.rmtree(tmp_path / "cache")
    (bucket / "checkpoints" / "9").mkdir()
    (bucket / "checkpoints" / "9" / "partial").write_text("cut short")
    run(config(6), "gs://bucket/run")
    steps = [json.loads(line)["step"] for line in (bucket / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]                       # resumed at 4: each step once
    listed = json.loads((bucket / MANIFEST).read_text())["files"]
    kept = sorted({name.split("/")[1] for name in listed if name.startswith("checkpoints/")})
    assert kept == ["4", "6"] and not (bucket / "checkpoints" / "2" / "state" / "_METADATA").exists()
    assert (bucket / "checkpoints" / "9" / "partial").exists()   # not the mirror's: left alone

    model = export("gs://bucket/run", "gs://bucket/model")
    assert model == "gs://bucket/model" and (root / "model" / "task.json").exists()
    assert load("gs://bucket/model").task.model_config.hidden_size == 32
    with pytest.raises(FileExistsError, match="gs://bucket/model exists"):
        export("gs://bucket/run", "gs://bucket/model")


def test_a_bucket_folder_that_is_not_a_mirrored_run_is_refused(fake_bucket):
    from rofjax.checkpoint.run import RunFolder

    root, _ = fake_bucket
    (root / "other").mkdir()
    (root / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="gs://bucket/other holds files but no rofjax-mirror.json"):
        RunFolder("gs://bucket/other").open()
