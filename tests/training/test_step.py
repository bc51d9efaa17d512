"""Sharded train steps equal the single-device step."""

import jax
import numpy as np
import pytest

from rofjax.data.tokenizer import Tokenizer
from rofjax.data.vocab import EMBEDDED_VOCAB
from rofjax.models import get_preset
from rofjax.parallel.mesh import create_mesh
from rofjax.training.optim import build_optimizer, learning_rate_schedule
from rofjax.training.state import Trainer
from rofjax.training.tasks import ClassificationTask

TEXTS = ["这本书写得很好，值得一读", "质量太差了，非常失望", "物流很快，包装也不错", "客服态度恶劣，不会再买",
         "还可以吧", "性价比高，推荐购买", "屏幕有坏点，退货了", "味道不错，下次还来"]
OPTIM = {"name": "adamw", "lr": 1e-3, "warmup_steps": 0, "decay": "linear", "weight_decay": 0.01,
         "clip_norm": 1.0}


def _task(config=None):
    config = config or get_preset("roformer_v2_tiny", vocab_size=5130, dropout_rate=0.1, attention_dropout_rate=0.1)
    return ClassificationTask(config, Tokenizer(EMBEDDED_VOCAB), num_labels=2, max_length=16)


def _batch(task):
    rows = [task.encode({"text": t.encode(), "label": i % 2}) for i, t in enumerate(TEXTS)]
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def _run(task, mesh, steps=3, optim=OPTIM):
    tx = build_optimizer(optim, total_steps=10)
    trainer = Trainer(task, tx, mesh, schedule=learning_rate_schedule(optim, 10))
    state = trainer.init_state(seed=0, batch_size=8)
    batch = _batch(task)
    losses = []
    for _ in range(steps):
        state, metrics = trainer.train_step(state, batch)
        losses.append(float(metrics["loss"]))
    return jax.device_get(state.params), losses, state


@pytest.fixture(scope="module")
def single_device():
    """The reference every mesh is compared with: the same steps on one device (computed once per module)."""
    params, losses, _ = _run(_task(), create_mesh(1, 1, 1, devices=jax.devices()[:1]))
    return params, losses


# Pure data parallelism, and all three axes at once, by default; each pair of axes alone under -m slow.
@pytest.mark.parametrize("axes", [dict(data=8), dict(data=2, fsdp=2, tensor=2)] + [
    pytest.param(axes, marks=pytest.mark.slow)
    for axes in (dict(data=2, fsdp=4), dict(data=2, tensor=4), dict(data=1, fsdp=2, tensor=4))])
def test_sharded_steps_equal_single_device(axes, single_device):
    task = _task()
    single_params, single_losses = single_device
    mesh = create_mesh(**{"data": 1, "fsdp": 1, "tensor": 1, **axes})
    params, losses, state = _run(task, mesh)
    np.testing.assert_allclose(losses, single_losses, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(single_params)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    if axes.get("tensor", 1) > 1:
        kernel = state.params["encoder"]["transformer"]["layer_0"]["feedforward"]["i_dense"]["kernel"]
        assert kernel.sharding.spec[1] == "tensor"
    if axes.get("fsdp", 1) > 1:
        kernel = state.params["encoder"]["transformer"]["layer_0"]["attention"]["q_dense"]["kernel"]
        assert kernel.sharding.spec[0] == "fsdp"


def test_loss_falls_and_nonfinite_updates_can_be_skipped():
    # One trainer that skips non-finite updates (a finite step is the same update with or without the skip):
    # it lowers the loss, then leaves the parameters as they were on a step whose loss is NaN.
    task = _task()
    constant = {**OPTIM, "lr": 3e-3, "decay": "constant"}
    trainer = Trainer(task, build_optimizer(constant, total_steps=10), create_mesh(1, 1, 1, devices=jax.devices()[:1]),
                      skip_nonfinite=True)
    state = trainer.init_state(seed=0, batch_size=8)
    batch = _batch(task)
    losses = []
    for _ in range(25):
        state, metrics = trainer.train_step(state, batch)
        assert bool(metrics["finite"])
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.5 * losses[0], losses
    before = jax.device_get((state.params, state.opt_state))
    batch["weights"] = np.full_like(batch["weights"], np.nan)
    state, metrics = trainer.train_step(state, batch)
    assert not bool(metrics["finite"])
    for a, b in zip(jax.tree_util.tree_leaves(jax.device_get((state.params, state.opt_state))),
                    jax.tree_util.tree_leaves(before)):
        np.testing.assert_array_equal(a, b)


def test_bfloat16_compute_keeps_float32_master_weights_and_ema_follows():
    config = get_preset("roformer_v2_tiny", vocab_size=5130, dtype="bfloat16")
    task = _task(config)
    tx = build_optimizer(OPTIM, total_steps=10)
    trainer = Trainer(task, tx, create_mesh(1, 1, 1, devices=jax.devices()[:1]), ema_decay=0.9)
    state = trainer.init_state(seed=0, batch_size=8)
    before = jax.device_get(state.params)
    state, metrics = trainer.train_step(state, _batch(task))
    assert np.isfinite(float(metrics["loss"]))
    params, ema = jax.device_get(state.params), jax.device_get(state.ema_params)
    for p, e, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(ema),
                       jax.tree_util.tree_leaves(before)):
        assert p.dtype == np.float32
        np.testing.assert_allclose(e, 0.9 * b + 0.1 * p, rtol=1e-6, atol=1e-7)


def test_dropout_prng_choice_is_reproducible_and_changes_only_the_masks(single_device):
    from rofjax.nn.dropout import dropout_mask
    from rofjax.training.state import step_dropout_key

    seed_data = jax.random.key_data(jax.random.key(3))
    same = [jax.random.key_data(step_dropout_key(seed_data, 5, "unsafe_rbg")) for _ in range(2)]
    np.testing.assert_array_equal(same[0], same[1])
    later = jax.random.key_data(step_dropout_key(seed_data, 6, "unsafe_rbg"))
    assert not np.array_equal(same[0], later)
    keep = np.asarray(dropout_mask(step_dropout_key(seed_data, 5, "unsafe_rbg"), (200_000,), 0.1))
    assert abs(keep.mean() - 0.9) < 0.003                      # binomial sd ≈ 0.0007

    one_device = create_mesh(1, 1, 1, devices=jax.devices()[:1])

    trainer = Trainer(_task(), build_optimizer(OPTIM, total_steps=10), one_device,
                      schedule=learning_rate_schedule(OPTIM, 10), dropout_prng="unsafe_rbg")

    def losses():
        state, out = trainer.init_state(seed=0, batch_size=8), []
        for _ in range(2):
            state, metrics = trainer.train_step(state, _batch(trainer.task))
            out.append(float(metrics["loss"]))
        return out

    rbg = losses()
    assert rbg == losses()
    threefry = single_device[1]
    assert rbg[0] != threefry[0]                               # other dropout masks, same model and data
    assert abs(rbg[0] - threefry[0]) < 0.1 * abs(threefry[0])
    with pytest.raises(ValueError, match="train.dropout_prng"):
        Trainer(_task(), build_optimizer(OPTIM, total_steps=10), one_device, dropout_prng="philox")


def test_compiler_options_reach_the_train_step_and_gpu_defaults_follow_the_config(single_device):
    from rofjax.training.state import (
        GPU_COMPILER_OPTIONS,
        GPU_KERNEL_DROPOUT_OPTIONS,
        default_compiler_options,
        parse_compiler_options,
    )

    assert parse_compiler_options("xla_gpu_enable_triton_gemm=true --xla_gpu_autotune_level=0 "
                                  "xla_gpu_enable_command_buffer=FUSION,CUBLAS") == {
        "xla_gpu_enable_triton_gemm": True, "xla_gpu_autotune_level": 0,
        "xla_gpu_enable_command_buffer": "FUSION,CUBLAS"}
    assert parse_compiler_options("") == {}
    with pytest.raises(ValueError, match="'xla_gpu_enable_triton_gemm' is not name=value"):
        parse_compiler_options("xla_gpu_enable_triton_gemm")

    config = get_preset("roformer_v2_tiny", vocab_size=5130)
    assert default_compiler_options("cpu", config) == {} and default_compiler_options("tpu", config) == {}
    assert default_compiler_options("gpu", config) == GPU_COMPILER_OPTIONS
    kernel_dropout = config.replace(fused_attention_dropout=True)
    assert default_compiler_options("gpu", kernel_dropout) == {**GPU_COMPILER_OPTIONS, **GPU_KERNEL_DROPOUT_OPTIONS}
    assert default_compiler_options("gpu", kernel_dropout.replace(attention_dropout_rate=0.0)) == \
        GPU_COMPILER_OPTIONS

    # The options go to XLA with the step: a valid one compiles to the same step, an unknown one is XLA's error.
    one_device = create_mesh(1, 1, 1, devices=jax.devices()[:1])
    options = {"xla_gpu_enable_triton_gemm": False, "xla_gpu_enable_command_buffer": "FUSION"}
    trainer = Trainer(_task(), build_optimizer(OPTIM, total_steps=10), one_device,
                      schedule=learning_rate_schedule(OPTIM, 10), compiler_options=options)
    assert trainer.compiler_options == options                 # no CPU defaults to add to them
    state, batch = trainer.init_state(seed=0, batch_size=8), _batch(trainer.task)
    state, metrics = trainer.train_step(state, batch)
    assert float(metrics["loss"]) == single_device[1][0]
    wrong = Trainer(_task(), build_optimizer(OPTIM, total_steps=10), one_device,
                    compiler_options={"xla_no_such_option": True})
    with pytest.raises(Exception, match="xla_no_such_option"):
        wrong.train_step(wrong.init_state(seed=0, batch_size=8), batch)
