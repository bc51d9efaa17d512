"""The Trainer's step binds the activation constraints and splits parameters and optimizer state as the rules say,
checked on 8 simulated devices (`data=2, fsdp=2, tensor=2`)."""

import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from rofjax.data.tokenizer import Tokenizer
from rofjax.data.vocab import EMBEDDED_VOCAB
from rofjax.models import get_preset
from rofjax.parallel.mesh import LOGICAL_RULES, batch_sharding, create_mesh, rules_from_config
from rofjax.training.state import Trainer
from rofjax.training.tasks.mlm import MaskedLMTask

BATCH = 8


@pytest.fixture(scope="module")
def lowered():
    tokenizer = Tokenizer(EMBEDDED_VOCAB)
    config = get_preset("roformer_v2_tiny", vocab_size=1000, scan_layers=True)
    task = MaskedLMTask(config, tokenizer, max_length=32, max_predictions=6)
    mesh = create_mesh(2, 2, 2)
    trainer = Trainer(task, optax.adamw(1e-3), mesh)
    state = trainer.abstract_state(BATCH)
    batch = {key: jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=batch_sharding(mesh, value.ndim))
             for key, value in task.init_batch(BATCH).items()}
    return trainer, state, trainer.lower_train_step(state, batch)


def test_activation_constraints_bind_in_the_lowered_step(lowered):
    _, _, step = lowered
    text = step.as_text()
    constraints = [line for line in text.splitlines() if "sharding_constraint" in line]
    # Embeddings, q/k/v, attention output, FFN hidden, each block's output, the MLM logits: forward and backward.
    assert len(constraints) >= 10, len(constraints)
    assert any('{"data", "fsdp"}' in line for line in constraints)   # batch over data × fsdp
    assert any('{"tensor"}' in line for line in constraints)         # heads / mlp over tensor


def test_parameters_and_optimizer_state_follow_the_rules(lowered):
    trainer, state, _ = lowered
    params = state.params
    assert params["embeddings"]["word_embeddings"]["embedding"].sharding.spec == P("tensor", "fsdp")
    layers = params["transformer"]["layers"]
    assert layers["feedforward"]["i_dense"]["kernel"].sharding.spec == P(None, "fsdp", "tensor")
    assert layers["feedforward"]["o_dense"]["kernel"].sharding.spec == P(None, "tensor", "fsdp")
    assert layers["attention"]["q_dense"]["kernel"].sharding.spec == P(None, "fsdp", "tensor")
    adam = state.opt_state[0]
    for moment in (adam.mu, adam.nu):
        leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x: x.sharding.spec, moment))
        expected = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x: x.sharding.spec, params))
        assert leaves == expected


def test_the_bound_step_compiles_and_runs(lowered, rng):
    trainer, _, step = lowered
    compiled = step.compile()
    state = trainer.init_state(0, BATCH)
    batch = trainer.task.init_batch(BATCH)
    batch["input_ids"] = rng.integers(5, 1000, size=batch["input_ids"].shape).astype(np.int32)
    batch["masked_weights"][:] = 1.0
    batch = {k: jax.device_put(v, batch_sharding(trainer.mesh, v.ndim)) for k, v in batch.items()}
    new_state, metrics = compiled(state, batch)
    assert np.isfinite(float(metrics["loss"]))
    assert int(new_state.step) == 1


def test_rules_come_from_the_config():
    import ml_collections

    config = ml_collections.ConfigDict({"mesh": {"data": -1, "logical_axis_rules": []}})
    assert rules_from_config(config) == LOGICAL_RULES
    config.mesh.logical_axis_rules = [["batch", ["data"]], ["embed", None], ["mlp", "tensor"]]
    assert rules_from_config(config) == (("batch", ("data",)), ("embed", None), ("mlp", "tensor"))
    config.mesh.logical_axis_rules = [["batch", "pipeline"]]
    with pytest.raises(ValueError, match=r"logical_axis_rules\[0\].*'pipeline'"):
        rules_from_config(config)
