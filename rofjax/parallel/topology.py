"""Devices of a topology that is not attached: simulated CPU devices, or TPU slices described by libtpu.

    cpu:8        eight host devices (the process must start with `--xla_force_host_platform_device_count=8`;
                 `prepare_host_devices` sets it before JAX is imported)
    v5e:16x16    a v5e-256 slice, chips laid out 16 × 16       (TPU names: v4, v5e, v5p, v6e; `kind:AxBxC`)
    v5p:4x4x4    a v5p-128 slice (64 chips, 128 TensorCores)
    v4:4x4x4     a v4-128 slice (64 chips in megacore mode)
    h100:8       eight NVIDIA H100 80GB (SXM) GPUs on one host (`h100` alone: one GPU; `h200:2x8`: two hosts of 8)

TPU devices come from `jax.experimental.topologies.get_topology_desc`, which needs libtpu (`pip install
'rofjax[tpu]'`) but no TPU: the step compiles for the slice on any machine. GPU devices come from the same call
through JAX's CUDA plugin, given the card's description (`GPU_TARGETS`), with no GPU: `pip install
'rofjax[gpu-aot]'` installs the plugin and the cuDNN library, whose version the fused attention checks when it is
traced.
"""

from __future__ import annotations

import os
import re

# Per-chip HBM (GiB) as Google Cloud documents it, by the device_kind libtpu reports.
HBM_GIB = {"TPU v4": 32, "TPU v5 lite": 16, "TPU v5e": 16, "TPU v5": 95, "TPU v5p": 95, "TPU v6 lite": 32,
           "TPU v6e": 32}
TPU_KINDS = ("v4", "v5e", "v5p", "v6e")
_TPU_SPEC = re.compile(r"^(v4|v5e|v5p|v6e):(\d+(?:x\d+){1,2})$")
_CPU_SPEC = re.compile(r"^cpu:(\d+)$")
_GPU_SPEC = re.compile(r"^(h100|h200)(?::(?:(\d+)x)?(\d+))?$")

# What XLA's GPU compiler reads of a card (stream_executor's GpuTargetConfigProto), from NVIDIA's data sheets for
# the SXM parts: 132 SMs of compute capability 9.0, 50 MiB of L2, 1.98 GHz boost clock; memory as nvidia-smi
# reports it; cuDNN 9 and CUDA 13, the libraries of the JAX 0.11 CUDA wheels.
_HOPPER = """gpu_device_info {{
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_block_optin: 232448
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: 132
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: {bandwidth}
  l2_cache_size: 52428800
  clock_rate_ghz: 1.98
  device_memory_size: {memory}
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
  cuda_compute_capability {{
    major: 9
    minor: 0
  }}
}}
platform_name: "CUDA"
dnn_version_info {{
  major: 9
  minor: 10
}}
runtime_version {{
  major: 13
  minor: 0
}}
device_description_str: "{name}"
"""
GPU_TARGETS = {
    "h100": {"name": "NVIDIA H100 80GB HBM3", "memory": 81559 * 2**20, "bandwidth": 3_350_000_000_000},
    "h200": {"name": "NVIDIA H200", "memory": 143771 * 2**20, "bandwidth": 4_800_000_000_000},
}
GPU_MEMORY_BYTES = {target["name"]: target["memory"] for target in GPU_TARGETS.values()}


def parse_topology(spec: str) -> tuple[str, str | int]:
    """`("cpu", N)`, `("tpu", "v5e:16x16")` or `("gpu", "h100:1x8")` (hosts × GPUs per host); a malformed spec
    fails naming the accepted forms."""
    spec = spec.strip()
    if match := _CPU_SPEC.match(spec):
        count = int(match.group(1))
        if count < 1:
            raise ValueError(f"--topology {spec}: the device count must be at least 1.")
        return "cpu", count
    if _TPU_SPEC.match(spec):
        return "tpu", spec
    if match := _GPU_SPEC.match(spec):
        hosts, per_host = int(match.group(2) or 1), int(match.group(3) or 1)
        if hosts < 1 or per_host < 1:
            raise ValueError(f"--topology {spec}: host and GPU counts must be at least 1.")
        return "gpu", f"{match.group(1)}:{hosts}x{per_host}"
    raise ValueError(f"--topology {spec!r}: expected cpu:N, a TPU slice KIND:AxB[xC] with KIND one of "
                     f"{TPU_KINDS} (e.g. v5e:16x16, v5p:4x4x4, v4:4x4x4), or GPUs {'|'.join(GPU_TARGETS)}[:[H x]N] "
                     f"(e.g. h100, h100:8, h200:2x8).")


def prepare_host_devices(spec: str) -> None:
    """Before JAX is imported: ask XLA for N host devices (`cpu:N`), and keep JAX off any local accelerator."""
    platform, count = parse_topology(spec)
    os.environ["JAX_PLATFORMS"] = "cpu"
    # Compiling for a slice only reads libtpu's chip descriptions: several such processes may share the library.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    if platform == "cpu":
        flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", ""))
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def topology_devices(spec: str) -> list:
    """The devices of `spec`, ordered as the topology numbers them."""
    import jax

    platform, value = parse_topology(spec)
    if platform == "cpu":
        devices = jax.devices("cpu")
        if len(devices) < value:
            raise RuntimeError(f"--topology {spec}: this process has {len(devices)} host devices; start it with "
                               f"XLA_FLAGS=--xla_force_host_platform_device_count={value} (train.compile does).")
        return devices[:value]
    from jax.experimental import topologies

    if platform == "gpu":
        return _gpu_devices(spec, value)
    kind = str(value).split(":")[0]
    # v4 chips hold two TensorCores that XLA drives as one device (megacore), as TPU VMs run them.
    extra = {"chip_config_name": "megacore"} if kind == "v4" else {}
    import importlib.util

    if importlib.util.find_spec("libtpu") is None:
        raise RuntimeError(f"--topology {spec}: TPU slices are described by libtpu, which is not installed; "
                           f"pip install 'rofjax[tpu]' (no TPU needed).")
    try:
        return list(topologies.get_topology_desc(topology_name=str(value), platform="tpu", **extra).devices)
    except Exception as error:   # noqa: BLE001 (a topology libtpu does not know, or a libtpu of another jax)
        raise RuntimeError(f"--topology {spec}: libtpu could not describe this slice ({type(error).__name__}: "
                           f"{str(error)[:300]}).") from error


def cuda_plugin_installed() -> bool:
    """Whether JAX's CUDA plugin (which compiles for GPUs, with or without one) is importable."""
    import importlib.util

    try:
        return any(importlib.util.find_spec(f"jax_plugins.{name}") is not None
                   for name in ("xla_cuda13", "xla_cuda12"))
    except ModuleNotFoundError:          # no jax_plugins package at all
        return False


def _gpu_devices(spec: str, value: str) -> list:
    from jax.experimental import topologies

    card, layout = value.split(":")
    hosts, per_host = layout.split("x")
    if not cuda_plugin_installed():
        raise RuntimeError(f"--topology {spec}: GPUs are described by JAX's CUDA plugin, which is not installed; "
                           f"pip install 'rofjax[gpu-aot]' (no GPU needed).")
    try:
        description = topologies.get_topology_desc(platform="cuda", target_config=_HOPPER.format(**GPU_TARGETS[card]),
                                                   topology=f"1x{hosts}x{per_host}")
    except Exception as error:   # noqa: BLE001 (a plugin of another jax, or one that cannot compile without a GPU)
        raise RuntimeError(f"--topology {spec}: JAX's CUDA plugin could not describe these GPUs "
                           f"({type(error).__name__}: {str(error)[:300]}).") from error
    return list(description.devices)


def device_memory_bytes(devices) -> int | None:
    """Memory per device: the chip's HBM on TPU, the card's memory on a GPU; on simulated host devices, the host's
    memory shared out."""
    kind = devices[0].device_kind
    if kind in HBM_GIB:
        return HBM_GIB[kind] * 2**30
    if kind in GPU_MEMORY_BYTES:
        return GPU_MEMORY_BYTES[kind]
    if devices[0].platform == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // len(devices)
        except (ValueError, OSError):
            return None
    return None
