import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rofjax.checkpoint import CheckpointMismatchError, load_model_config, restore_params, save_params
from rofjax.models import Encoder, get_preset

IDS = np.array([[2, 9, 17, 0], [5, 6, 7, 8]])


def _params(config):
    return Encoder(config).init(jax.random.key(0), IDS)


def test_save_and_restore_round_trip(tmp_path):
    config = get_preset("roformer_v2_tiny")
    variables = _params(config)
    save_params(tmp_path / "ckpt", variables, config)
    restored = restore_params(tmp_path / "ckpt")
    assert load_model_config(tmp_path / "ckpt") == config
    original = nn.unbox(variables)["params"]
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: np.array_equal(a, b), original, restored))
    with pytest.raises(FileExistsError):
        save_params(tmp_path / "ckpt", variables, config)


def test_restore_onto_a_mesh_with_target_shardings(tmp_path):
    config = get_preset("roformer_v2_tiny")
    variables = _params(config)
    save_params(tmp_path / "ckpt", variables)
    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "tensor"))
    rules = (("embed", None), ("heads", "tensor"), ("mlp", "tensor"), ("vocab", "tensor"), ("kv", None))
    shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(variables), mesh, rules)["params"]
    restored = restore_params(tmp_path / "ckpt", target=nn.unbox(variables)["params"], shardings=shardings)
    kernel = restored["transformer"]["layer_0"]["attention"]["q_dense"]["kernel"]
    assert kernel.sharding == NamedSharding(mesh, PartitionSpec(None, "tensor"))
    expected = nn.unbox(variables)["params"]["transformer"]["layer_0"]["attention"]["q_dense"]["kernel"]
    np.testing.assert_array_equal(np.asarray(kernel), np.asarray(expected))


def test_params_only_restore_from_a_training_checkpoint(tmp_path):
    config = get_preset("gau_alpha_tiny")
    params = nn.unbox(_params(config))["params"]
    state = {"params": params, "opt_state": {"mu": jax.tree_util.tree_map(jnp.zeros_like, params)},
             "step": jnp.asarray(100)}
    with ocp.CheckpointManager(tmp_path / "run") as manager:
        for step in (50, 100):
            manager.save(step, args=ocp.args.Composite(state=ocp.args.PyTreeSave(state)))
        manager.wait_until_finished()
    restored = restore_params(tmp_path / "run")
    assert set(restored) == set(params)
    hidden = Encoder(config).apply({"params": restored}, IDS)
    np.testing.assert_allclose(np.asarray(hidden), np.asarray(Encoder(config).apply({"params": params}, IDS)))
    assert restore_params(tmp_path / "run", step=50) is not None


def test_mismatched_target_names_the_parameter(tmp_path):
    save_params(tmp_path / "ckpt", _params(get_preset("roformer_v2_tiny")))
    bigger = nn.unbox(_params(get_preset("roformer_v2_tiny", intermediate_size=96)))["params"]
    with pytest.raises(CheckpointMismatchError, match=r"feedforward/i_dense/kernel is stored with shape \(64, 128\)"):
        restore_params(tmp_path / "ckpt", target=bigger)
    scanned = nn.unbox(_params(get_preset("roformer_v2_tiny", scan_layers=True)))["params"]
    with pytest.raises(CheckpointMismatchError, match="lacks parameter transformer/layers"):
        restore_params(tmp_path / "ckpt", target=scanned)
    with pytest.raises(FileNotFoundError, match="No checkpoint folder"):
        restore_params(tmp_path / "nowhere")
