"""A train state saved on one mesh restores on another and on a single device."""

import jax
import numpy as np
import orbax.checkpoint as ocp

from rofjax.parallel.mesh import create_mesh
from rofjax.training.optim import build_optimizer
from rofjax.training.state import Trainer
from tests.training.test_step import OPTIM, _task


def test_state_saved_on_4x2_restores_on_2x4_and_one_device(tmp_path):
    task = _task()
    tx = build_optimizer(OPTIM, total_steps=10)
    source = Trainer(task, tx, create_mesh(data=4, fsdp=1, tensor=2))
    state = source.init_state(seed=3, batch_size=8)
    with ocp.PyTreeCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "state", state)
    expected = [np.asarray(x) for x in jax.tree_util.tree_leaves(state)]

    for mesh in (create_mesh(data=2, fsdp=1, tensor=4), create_mesh(1, 1, 1, devices=jax.devices()[:1])):
        target = Trainer(task, tx, mesh).abstract_state(batch_size=8)
        with ocp.PyTreeCheckpointer() as checkpointer:
            restored = checkpointer.restore(tmp_path / "state", args=ocp.args.PyTreeRestore(
                item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target)))
        for got, want in zip(jax.tree_util.tree_leaves(restored), expected):
            np.testing.assert_array_equal(np.asarray(got), want)
        kernel = restored.params["encoder"]["transformer"]["layer_0"]["feedforward"]["i_dense"]["kernel"]
        assert kernel.sharding.mesh.shape == mesh.shape
        assert len(kernel.sharding.device_set) == mesh.size
