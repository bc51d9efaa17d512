"""`python -m train.compile`: the real train step compiled for a topology that is not attached."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FITS = re.compile(r"^fits: (yes|no) \d+\.\d+ GiB of \d+\.\d+ GiB$")


def _compile(*args, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    return subprocess.run([sys.executable, "-m", "train.compile", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_tiny_mlm_compiles_for_eight_host_devices(tmp_path):
    out = tmp_path / "aot"
    result = _compile("--config", "configs/pretrain/tiny_mlm.py", "--topology", "cpu:8", "--out", str(out),
                      "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert FITS.match(result.stdout.strip().splitlines()[-1]), result.stdout
    stablehlo = (out / "train_step.stablehlo.txt").read_text()
    assert stablehlo.count("sharding_constraint") >= 10
    assert '"tensor"' in stablehlo and '"fsdp"' in stablehlo
    assert "HloModule" in (out / "train_step.hlo.txt").read_text()
    memory = json.loads((out / "memory.json").read_text())
    assert memory["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2} and memory["devices"] == 8
    assert memory["total_bytes"] == (memory["argument_size_in_bytes"] + memory["output_size_in_bytes"]
                                     + memory["temp_size_in_bytes"] - memory["alias_size_in_bytes"]) > 0
    cost = json.loads((out / "cost.json").read_text())
    assert cost["flops"] > 0 and cost["model_flops_per_step"] > 0


def test_a_malformed_topology_is_named(tmp_path):
    result = _compile("--config", "configs/pretrain/tiny_mlm.py", "--topology", "v9z:2x2", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "v9z:2x2" in result.stderr and "cpu:N" in result.stderr
    # A mesh the devices cannot make: one line, exit 2, and no empty output folder left behind.
    result = _compile("--config", "configs/pretrain/tiny_mlm.py", "--topology", "cpu:2", "--out", str(tmp_path / "o"),
                      "--config.mesh.tensor=3")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: 2 devices cannot be split into data=-1, fsdp=1, tensor=3."], result.stderr[-2000:]
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="needs libtpu (pip install 'rofjax[tpu]')")
@pytest.mark.parametrize("config", ["configs/pretrain/gau_alpha_base.py", "configs/pretrain/roformer_v2_large.py"])
def test_published_recipes_compile_for_a_v5e_256(tmp_path, config):
    result = _compile("--config", config, "--topology", "v5e:16x16", "--out", str(tmp_path), timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("fits: yes")
    memory = json.loads((tmp_path / "memory.json").read_text())
    assert memory["devices"] == 256 and memory["device_memory_bytes"] == 16 * 2**30


def test_a_tpu_refusal_for_lack_of_hbm_is_read_as_the_memory_asked_for():
    from rofjax.training.aot import _out_of_memory

    refusal = RuntimeError("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
                           "temporaries (26.91G) exceeds available HBM (15.75G).")
    assert _out_of_memory(refusal) == int(26.91 * 2**30)
    assert _out_of_memory(RuntimeError("INVALID_ARGUMENT: bad shape")) is None


def test_gpu_topologies_parse_to_hosts_and_cards():
    from rofjax.parallel.topology import GPU_MEMORY_BYTES, parse_topology

    assert parse_topology("h100") == ("gpu", "h100:1x1")
    assert parse_topology("h100:8") == ("gpu", "h100:1x8")
    assert parse_topology("h200:2x8") == ("gpu", "h200:2x8")
    with pytest.raises(ValueError, match="h100, h100:8"):
        parse_topology("a100:8")
    with pytest.raises(ValueError, match="at least 1"):
        parse_topology("h100:0")
    assert GPU_MEMORY_BYTES["NVIDIA H100 80GB HBM3"] == 81559 * 2**20


def _gpu_compile_possible():
    from rofjax.parallel.topology import cuda_plugin_installed

    return cuda_plugin_installed()


@pytest.mark.skipif(not _gpu_compile_possible(), reason="needs JAX's CUDA plugin (pip install 'rofjax[gpu-aot]')")
def test_tiny_mlm_compiles_for_eight_gpus_without_a_gpu(tmp_path):
    out = tmp_path / "aot"
    result = _compile("--config", "configs/pretrain/tiny_mlm.py", "--topology", "h100:8", "--out", str(out),
                      "--config.mesh.fsdp=8")
    assert result.returncode == 0, result.stderr[-3000:]
    assert FITS.match(result.stdout.strip().splitlines()[-1]), result.stdout
    memory = json.loads((out / "memory.json").read_text())
    assert memory["devices"] == 8 and memory["device_kind"] == "NVIDIA H100 80GB HBM3"
    assert memory["device_memory_bytes"] == 81559 * 2**20 and memory["mesh"]["fsdp"] == 8
    assert "__cublas" in (out / "train_step.hlo.txt").read_text()
