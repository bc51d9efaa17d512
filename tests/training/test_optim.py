import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl import flags
from ml_collections import config_flags

from configs.base import base_config
from rofjax.models.schedules import residual_alpha
from rofjax.training.optim import (
    build_optimizer,
    learning_rate_schedule,
    lr_multiplier,
    optim_config,
    path_mask,
    piecewise_linear,
)


def test_no_warmup_means_full_learning_rate_at_step_zero():
    lr = learning_rate_schedule({"lr": 1e-3, "warmup_steps": 0, "decay": "linear", "end_lr_ratio": 0.0}, 100)
    assert float(lr(0)) == pytest.approx(1e-3)
    assert float(lr(50)) == pytest.approx(5e-4)
    assert float(lr(100)) == pytest.approx(0.0, abs=1e-12)


def test_warmup_then_cosine():
    m = lr_multiplier({"warmup_steps": 10, "decay": "cosine", "end_lr_ratio": 0.1}, 110)
    assert float(m(0)) == 0.0 and float(m(5)) == pytest.approx(0.5) and float(m(10)) == pytest.approx(1.0)
    assert float(m(60)) == pytest.approx(0.1 + 0.9 * 0.5)
    assert float(m(110)) == pytest.approx(0.1) and float(m(500)) == pytest.approx(0.1)


def test_piecewise_linear_matches_bert4keras_at_its_knots():
    roformer_v2 = piecewise_linear({32000: 1, 320000: 0.5, 1280000: 0.1, 2560000: 0.01})
    expected = {0: 0.0, 16000: 0.5, 32000: 1.0, 176000: 0.75, 320000: 0.5, 1280000: 0.1, 2560000: 0.01,
                9000000: 0.01}
    for step, value in expected.items():
        assert float(roformer_v2(step)) == pytest.approx(value, rel=1e-5), step
    gau_alpha = piecewise_linear({0: 1, 160000: 0.5, 640000: 0.1, 1280000: 0.01})
    assert float(gau_alpha(0)) == 1.0 and float(gau_alpha(80000)) == pytest.approx(0.75)


def _tree():
    return {"encoder": {"attention_norm": {"gamma": jnp.ones(3)}, "q_dense": {"kernel": jnp.ones((3, 3)),
                                                                              "bias": jnp.ones(3)}}}


def test_weight_decay_mask_spares_norms_and_biases():
    mask = path_mask(_tree(), (r"(^|/)bias$", r"norm"), match_means=False)
    assert mask == {"encoder": {"attention_norm": {"gamma": False}, "q_dense": {"kernel": True, "bias": False}}}


def test_adam_without_bias_correction_and_with_decoupled_decay():
    params = {"w": jnp.asarray([1.0, -2.0])}
    grads = {"w": jnp.asarray([0.5, 0.25])}
    cfg = {"name": "adamw", "lr": 0.1, "b1": 0.9, "b2": 0.999, "eps": 1e-6, "bias_correction": False,
           "weight_decay": 0.01, "no_decay": []}
    tx = build_optimizer(cfg, total_steps=10)
    updates, _ = tx.update(grads, tx.init(params), params)
    m, v = 0.1 * grads["w"], 0.001 * grads["w"] ** 2
    expected = -0.1 * (m / (jnp.sqrt(v) + 1e-6) + 0.01 * params["w"])
    np.testing.assert_allclose(np.asarray(updates["w"]), np.asarray(expected), rtol=1e-5)
    corrected = build_optimizer({**cfg, "bias_correction": True}, total_steps=10)
    updates, _ = corrected.update(grads, corrected.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["w"]), np.asarray(-0.1 * (grads["w"] / (jnp.abs(grads["w"]) + 1e-6)
                                                                          + 0.01 * params["w"])), rtol=1e-4)


def test_lamb_scales_each_tensor_by_its_trust_ratio():
    params = {"a": jnp.full((4,), 3.0), "b": jnp.full((4,), 0.5)}
    grads = {"a": jnp.full((4,), 1.0), "b": jnp.full((4,), -1.0)}
    tx = build_optimizer({"name": "lamb", "lr": 1.0, "weight_decay": 0.0}, total_steps=1)
    updates, _ = tx.update(grads, tx.init(params), params)
    for name in params:   # Adam's first direction is ±1 per entry, so ‖Δ‖ = ‖sign‖ and the ratio is ‖x‖/‖Δ‖
        np.testing.assert_allclose(np.linalg.norm(updates[name]), np.linalg.norm(params[name]), rtol=1e-4)


def test_freezing_and_per_parameter_learning_rates():
    params = {"backbone": {"w": jnp.ones(3)}, "side": {"w": jnp.ones(3)}, "head": {"w": jnp.ones(3)}}
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    cfg = {"name": "adamw", "lr": 0.1, "weight_decay": 0.0, "param_lr": [("^backbone/", 0.0), ("^head/", 0.5)]}
    tx = build_optimizer(cfg, total_steps=10, params=params)
    state = tx.init(params)
    updates, _ = tx.update(grads, state, params)
    assert float(jnp.abs(updates["backbone"]["w"]).max()) == 0.0
    np.testing.assert_allclose(np.asarray(updates["head"]["w"]), 0.5 * np.asarray(updates["side"]["w"]), rtol=1e-6)
    adam_states = [s for s in jax.tree_util.tree_leaves(state) if getattr(s, "shape", ()) == (3,)]
    assert len(adam_states) == 4           # mu and nu for the two trained tensors only


@pytest.mark.parametrize("name", ["adafactor", "lion"])
def test_other_optimizers_reduce_a_quadratic(name):
    params = {"w": jnp.full((200, 130), 2.0)}
    tx = build_optimizer({"name": name, "lr": 0.05, "weight_decay": 0.0, "warmup_steps": 0, "decay": "constant"},
                         total_steps=50)
    state = tx.init(params)
    loss = lambda p: jnp.mean(p["w"] ** 2)
    start = float(loss(params))
    for _ in range(20):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    assert float(loss(params)) < 0.5 * start


def test_gradient_accumulation_applies_every_k_steps():
    params = {"w": jnp.zeros(2)}
    tx = build_optimizer({"name": "adamw", "lr": 0.1, "weight_decay": 0.0, "grad_accum_steps": 3}, total_steps=9)
    state = tx.init(params)
    for step in range(3):
        updates, state = tx.update({"w": jnp.ones(2)}, state, params)
        moved = float(jnp.abs(updates["w"]).max())
        assert (moved > 0) == (step == 2)


def test_residual_alpha_ramp_and_bad_config():
    assert float(residual_alpha(0, 100)) == 0.0 and float(residual_alpha(50, 100)) == 0.5
    assert float(residual_alpha(1000, 100)) == 1.0 and float(residual_alpha(0, 0)) == 1.0
    with pytest.raises(ValueError, match="optim.name='sgdd'"):
        build_optimizer({"name": "sgdd", "lr": 1.0}, 10)
    with pytest.raises(ValueError, match="optim.decay='exp'"):
        lr_multiplier({"decay": "exp"}, 10)


def _command_line(*overrides):
    """The locked base config after `--config.KEY=VALUE` overrides, parsed as train/_main.py parses them."""
    argv = ["finetune", *overrides]
    flag_values = flags.FlagValues()
    config = base_config()
    config.lock()
    config_flags.DEFINE_config_dict("config", config, flag_values=flag_values, sys_argv=argv)
    flag_values(argv)
    return flag_values.config


def _updates(optim, params, grads_per_step):
    tx = build_optimizer(optim, total_steps=100)
    state, out = tx.init(params), []
    for grads in grads_per_step:
        updates, state = tx.update(grads, state, params)
        out.append(np.asarray(updates["w"], np.float64))
    return out


P = np.array([1.0, -2.0, 0.5])
GRADS = [np.array([0.3, -1.2, 2.0]), np.array([-0.5, 0.4, 0.1])]
ADAFACTOR = ["--config.optim.name=adafactor", "--config.optim.decay=constant", "--config.optim.lr=0.1",
             "--config.optim.weight_decay=0.0", "--config.optim.clip_norm=0.0"]


def _numpy_adafactor(decay_rate=0.8, eps1=1e-30, clipping_threshold=1.0, lr=0.1):
    """Unfactored Adafactor without momentum: β₂ₜ = 1 − t^(−decay_rate), RMS-clipped, × lr × max(RMS(p), 1e-3)."""
    v, out = np.zeros(3), []
    for t, g in enumerate(GRADS, start=1):
        beta = 1.0 - t ** -decay_rate
        v = beta * v + (1.0 - beta) * (g * g + eps1)
        u = g / np.sqrt(v)
        u = u / max(1.0, np.sqrt(np.mean(u * u)) / clipping_threshold)
        out.append(-lr * max(np.sqrt(np.mean(P * P)), 1e-3) * u)
    return out


@pytest.mark.parametrize("key, value", [("decay_rate", 0.5), ("eps1", 0.1), ("clipping_threshold", 0.2)])
def test_adafactor_options_set_on_the_command_line_change_its_updates(key, value):
    config = _command_line(*ADAFACTOR, f"--config.optim.{key}={value}")
    assert config.optim[key] == value
    params = {"w": jnp.asarray(P, jnp.float32)}
    got = _updates(config.optim, params, [{"w": jnp.asarray(g, jnp.float32)} for g in GRADS])
    expected, default = _numpy_adafactor(**{key: value}), _numpy_adafactor()
    for step in range(2):
        np.testing.assert_allclose(got[step], expected[step], rtol=1e-5, atol=1e-9)
    assert np.abs(expected[1] - default[1]).max() > 1e-3


def test_no_decay_set_on_the_command_line_spares_the_matching_parameters():
    config = _command_line("--config.optim.no_decay=('^frozen_scale$',)", "--config.optim.weight_decay=0.1",
                           "--config.optim.lr=0.5", "--config.optim.decay=constant")
    params = {"frozen_scale": jnp.full((2,), 3.0), "kernel": jnp.full((2,), 3.0)}
    tx = build_optimizer(config.optim, total_steps=10)
    updates, _ = tx.update(jax.tree_util.tree_map(jnp.zeros_like, params), tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["frozen_scale"]), 0.0)
    np.testing.assert_allclose(np.asarray(updates["kernel"]), -0.5 * 0.1 * 3.0, rtol=1e-6)


def test_param_lr_set_on_the_command_line_scales_and_freezes_the_matching_parameters():
    config = _command_line("--config.optim.param_lr=(('^head', 2.0), ('^frozen', 0.0))", "--config.optim.lr=0.5",
                           "--config.optim.decay=constant", "--config.optim.weight_decay=0.0",
                           "--config.optim.name=lion")
    params = {"head": jnp.zeros((2,)), "frozen": jnp.zeros((2,)), "body": jnp.zeros((2,))}
    tx = build_optimizer(config.optim, total_steps=10, params=params)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["body"]), -0.5)            # lion: −lr · sign(…)
    np.testing.assert_allclose(np.asarray(updates["head"]), -1.0)
    np.testing.assert_allclose(np.asarray(updates["frozen"]), 0.0)


def _numpy_lion(grads, b2, b1=0.9, lr=0.1, weight_decay=0.0):
    """Lion (Chen et al. 2023): Δ = −lr·(sign(β₁m + (1−β₁)g) + λp), then m ← β₂m + (1−β₂)g."""
    m, out = np.zeros(3), []
    for g in grads:
        out.append(-lr * (np.sign(b1 * m + (1 - b1) * g) + weight_decay * P))
        m = b2 * m + (1 - b2) * g
    return out


def test_lion_uses_its_published_b2_unless_b2_is_set():
    lion = ["--config.optim.name=lion", "--config.optim.decay=constant", "--config.optim.lr=0.1",
            "--config.optim.clip_norm=0.0", "--config.optim.weight_decay=0.0"]
    # g₂ = −0.05·g₁: the second update is −lr·sign(0.9(1−β₂)g₁ + 0.1g₂), the sign of g₁ for β₂ = 0.99 and of g₂
    # for β₂ = 0.999, so it tells the two apart.
    grads = [GRADS[0], -0.05 * GRADS[0]]
    params = {"w": jnp.asarray(P, jnp.float32)}
    second = {}
    for overrides, b2 in [((), 0.99), (("--config.optim.b2=0.999",), 0.999)]:
        config = _command_line(*lion, *overrides)
        got = _updates(config.optim, params, [{"w": jnp.asarray(g, jnp.float32)} for g in grads])
        expected = _numpy_lion(grads, b2)
        for step in range(2):
            np.testing.assert_allclose(got[step], expected[step], rtol=1e-6)
        second[b2] = got[1]
    np.testing.assert_array_equal(-np.sign(second[0.99]), np.sign(grads[0]))
    np.testing.assert_array_equal(-np.sign(second[0.999]), np.sign(grads[1]))


def test_a_misspelt_optim_key_fails_naming_it():
    with pytest.raises(AttributeError, match="decay_rat"):
        _command_line("--config.optim.decay_rat=0.5")
    config = base_config()
    config.lock()
    with pytest.raises(AttributeError, match="decay_rat"):
        config.optim.decay_rat = 0.5
    with pytest.raises(KeyError, match=r"optim\.decay_rat is not an optimiser option"):
        build_optimizer({"name": "adafactor", "decay_rat": 0.5}, total_steps=10)
    with pytest.raises(KeyError, match=r"optim\.warmup is not"):
        learning_rate_schedule({"lr": 1e-3, "warmup": 10}, total_steps=10)


def test_the_base_config_optim_section_is_optim_config():
    assert base_config().optim.to_dict() == optim_config().to_dict()
    assert optim_config(name="lion", b2=0.95).b2 == 0.95
