"""Devices of a topology that is not attached: simulated CPU devices, or TPU slices described by libtpu.

    cpu:8        eight host devices (the process must start with `--xla_force_host_platform_device_count=8`;
                 `prepare_host_devices` sets it before JAX is imported)
    v5e:16x16    a v5e-256 slice, chips laid out 16 × 16       (TPU names: v4, v5e, v5p, v6e; `kind:AxBxC`)
    v5p:4x4x4    a v5p-128 slice (64 chips, 128 TensorCores)
    v4:4x4x4     a v4-128 slice (64 chips in megacore mode)

TPU devices come from `jax.experimental.topologies.get_topology_desc`, which needs libtpu (`pip install
'rofjax[tpu]'`) but no TPU: the step compiles for the slice on any machine.
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


def parse_topology(spec: str) -> tuple[str, str | int]:
    """`("cpu", N)` or `("tpu", "v5e:16x16")`; a malformed spec fails naming the accepted forms."""
    spec = spec.strip()
    if match := _CPU_SPEC.match(spec):
        count = int(match.group(1))
        if count < 1:
            raise ValueError(f"--topology {spec}: the device count must be at least 1.")
        return "cpu", count
    if _TPU_SPEC.match(spec):
        return "tpu", spec
    raise ValueError(f"--topology {spec!r}: expected cpu:N or a TPU slice KIND:AxB[xC] with KIND one of "
                     f"{TPU_KINDS} (e.g. v5e:16x16, v5p:4x4x4, v4:4x4x4).")


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


def device_memory_bytes(devices) -> int | None:
    """Memory per device: the chip's HBM on TPU; on simulated host devices, the host's memory shared out."""
    kind = devices[0].device_kind
    if kind in HBM_GIB:
        return HBM_GIB[kind] * 2**30
    if devices[0].platform == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // len(devices)
        except (ValueError, OSError):
            return None
    return None
