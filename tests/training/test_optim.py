import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rofjax.training.optim import (
    build_optimizer,
    learning_rate_schedule,
    lr_multiplier,
    path_mask,
    piecewise_linear,
    residual_alpha,
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
