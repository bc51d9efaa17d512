"""Every test process sees 8 simulated CPU devices, so sharded code paths run on a laptop or CI."""

import atexit
import os
import shutil
import tempfile

# LLVM's optimisation of the CPU code XLA emits (level 0 here) changes neither the HLO nor any floating-point
# result (no fast-math either way), only how long a compile takes: about a sixth less of the suite's time, most of
# which is compiling tiny programs that then run for a few steps.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]
    + ([] if "xla_backend_optimization_level" in os.environ.get("XLA_FLAGS", "")
       else ["--xla_backend_optimization_level=0"])
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One persistent compilation cache for the whole session, its workers and the programs they start: many tests
# compile the same tiny train step (a killed run and its rerun, each CLUE task's twin configs), and on two cores
# compiling is most of a short run. Made by the first process (xdist's controller), removed when it exits. Every
# program goes in, however quick to compile: the workers, subprocesses and notebook kernels each compile the same
# small programs (each eager operation of a module's init is one), and caching those too took the suite from 531
# to 411 s on two cores.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="rofjax-test-compilation-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
import pytest  # noqa: E402

# Orbax splits the writing of a replicated array among its replicas (one eager slice per replica and shape). On
# simulated CPU devices that is all overhead, about a second per save; the file written is the same either way.
ocp.type_handlers.register_type_handler(
    jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)


@pytest.fixture
def rng():
    """A numpy Generator seeded per test, so every failure reproduces."""
    return np.random.default_rng(20220307)


def pytest_report_header(config):
    return f"jax {jax.__version__}, devices: {jax.device_count()} x {jax.devices()[0].platform}"
