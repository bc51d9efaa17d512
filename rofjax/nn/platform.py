"""The platform a computation is being built for, which picks the kernels of the `auto` settings."""

from __future__ import annotations

import jax


def target_platform() -> str:
    """`cpu`, `gpu` or `tpu`: the platform of the mesh's devices where a mesh is set (ahead-of-time compilation for a
    TPU slice or a GPU runs on a CPU host), else JAX's default backend."""
    mesh = jax.sharding.get_abstract_mesh()
    device = None if mesh.empty else getattr(mesh, "abstract_device", None)
    return getattr(device, "platform", None) or jax.default_backend()
