"""The logical axis names on every parameter are enough to shard a layer over a device mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rofjax.nn import GatedAttentionUnit, GlobalPointer, MultiHeadAttention

RULES = (("batch", "data"), ("length", None), ("embed", None), ("heads", "tensor"), ("kv", None),
         ("mlp", "tensor"), ("vocab", "tensor"))


@pytest.mark.parametrize("module", [
    MultiHeadAttention(num_heads=4, head_size=8),
    GatedAttentionUnit(units=32, key_size=8),
    GlobalPointer(heads=4, head_size=8),
])
def test_sharded_apply_equals_single_device(rng, module):
    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "tensor"))
    x = jnp.asarray(rng.normal(size=(4, 6, 16)).astype(np.float32))
    mask = jnp.asarray(np.arange(6)[None] < np.array([[6], [4], [5], [2]]))
    variables = module.init(jax.random.key(0), x, mask)
    expected = module.apply(variables, x, mask)

    specs = nn.get_partition_spec(variables)
    with nn.logical_axis_rules(RULES):
        param_shardings = nn.logical_to_mesh_sharding(specs, mesh, RULES)
    assert any(s.spec != PartitionSpec() for s in jax.tree_util.tree_leaves(param_shardings))
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
    sharded_vars = jax.device_put(nn.unbox(variables), param_shardings)

    @jax.jit
    def forward(v, inputs, m):
        with nn.logical_axis_rules(RULES):
            return module.apply(v, inputs, m)

    with jax.set_mesh(mesh):
        got = forward(sharded_vars, jax.device_put(x, batch_sharding), jax.device_put(mask, batch_sharding))
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5, rtol=1e-5)
