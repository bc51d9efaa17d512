"""benchmarks/hlo_traffic.py: bytes charged to the kernels of an optimised HLO module."""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODULE = """HloModule jit_step, is_scheduled=true

%fused_max (p: bf16[64,32]) -> bf16[64,32] {
  %p = bf16[64,32]{1,0} parameter(0)
  ROOT %m = bf16[64,32]{1,0} maximum(%p, %p)
}

ENTRY %main.1 (x.1: bf16[64,16], w.1: f32[16,32]) -> bf16[64,32] {
  %x.1 = bf16[64,16]{1,0} parameter(0)
  %w.1 = f32[16,32]{1,0} parameter(1)
  %wrapped_convert = bf16[16,32]{1,0} fusion(%w.1), kind=kLoop, calls=%fused_max, metadata={op_name="jit(step)/transformer/layer_0/dense/convert_element_type"}
  %custom-call.1 = (bf16[64,32]{1,0}, s8[1024]{0}) custom-call(%x.1, %wrapped_convert), custom_call_target="__cublas$lt$matmul", backend_config={"gemm_backend_config":{"epilogue":"RELU"}}
  %loop_max = bf16[64,32]{1,0} fusion(%custom-call.1#0), kind=kLoop, calls=%fused_max, metadata={op_name="jit(step)/transformer/layer_1/dense/max"}
  %bitcast.1 = bf16[2048]{0} bitcast(%loop_max)
  ROOT %reduce = f32[64]{0} fusion(%loop_max), kind=kInput, calls=%fused_max, metadata={op_name="jit(step)/transformer/layer_0/dense/max"}
}
"""


@pytest.fixture(scope="module")
def hlo_traffic():
    spec = importlib.util.spec_from_file_location("hlo_traffic", os.path.join(ROOT, "benchmarks", "hlo_traffic.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_kernel_is_charged_its_outputs_and_operands(hlo_traffic, tmp_path):
    path = tmp_path / "train_step.hlo.txt"
    path.write_text(MODULE)
    result = hlo_traffic.traffic(str(tmp_path))         # a train.compile folder or the file itself
    kinds = result["kinds"]
    # The matmul: its output (not the workspace) and its two operands.
    assert kinds["matmul"] == {"kernels": 1, "bytes": 64 * 32 * 2 + 64 * 16 * 2 + 16 * 32 * 2}
    # Two elementwise fusions: the f32 → bf16 weights, the maximum reading the matmul's first output.
    assert kinds["elementwise fusion"] == {"kernels": 2, "bytes": (16 * 32 * 4 + 16 * 32 * 2) + 2 * 64 * 32 * 2}
    assert kinds["reduction fusion"] == {"kernels": 1, "bytes": 64 * 4 + 64 * 32 * 2}
    assert "bitcast" not in kinds and "parameter" not in kinds
    assert result["bandwidth_bound_bytes"] == sum(kinds[k]["bytes"] for k in ("elementwise fusion", "reduction fusion"))
    assert result["matmul_epilogues"] == {"RELU": 1}
    # Layers fold into one source line.
    sources = {(g["kind"], g["source"]): g["kernels"] for g in result["groups"]}
    assert sources[("elementwise fusion", "transformer/layer_N/dense/max")] == 1
    assert sources[("reduction fusion", "transformer/layer_N/dense/max")] == 1


def test_a_file_without_an_entry_computation_is_refused(hlo_traffic, tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("not an HLO module\n")
    assert hlo_traffic.main([str(path)]) == 1
    assert "ENTRY" in capsys.readouterr().err
