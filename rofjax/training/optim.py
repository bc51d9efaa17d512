"""Optimisers and learning-rate schedules from a config, as optax chains (bert4keras semantics where they differ).

Schedule = peak lr × multiplier(step):
* `warmup_steps` linear ramp 0 → 1 (0 means full learning rate at step 0, the GAU-α recipe), then `decay`
  ∈ {constant, linear, cosine} down to `end_lr_ratio` at `total_steps`;
* or `piecewise_linear`, bert4keras's `{step: multiplier}` dict: linear between knots, the last value held after the
  last knot, and a knot (0, 0.0) prepended when the first key is not 0 (so `{32000: 1, ...}` is a 32k warmup).

Optimisers: `adamw` (ε added after the square root, as bert4keras; `bias_correction=False` skips m̂, v̂), `lamb`
(AdamW then the per-tensor trust ratio ‖x‖/‖Δx‖), `adafactor` (bert4keras defaults: no momentum, decay 0.8,
ε₁ 1e-30, ε₂ 1e-3, update clipping 1.0, factored from 128), `lion`. Around them: global-norm clipping, weight-decay
mask (no decay on norms, biases and ScaleOffset), per-parameter learning-rate multipliers by regex (0 freezes),
gradient accumulation (`optax.MultiSteps`: the schedule counts updates, not micro-batches).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

OPTIMIZERS = ("adamw", "lamb", "adafactor", "lion")
DECAYS = ("constant", "linear", "cosine")
DEFAULT_NO_DECAY = (r"(^|/)bias$", r"(^|/)beta$", r"(^|/)gamma$", r"norm", r"scaleoffset")


def _get(cfg, name, default=None):
    if cfg is None:
        return default
    if hasattr(cfg, "get"):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


def piecewise_linear(schedule: Mapping[int, float]):
    """bert4keras `piecewise_linear(t, schedule)` as a jittable function of the step."""
    if not schedule:
        raise ValueError("piecewise_linear needs at least one {step: multiplier} knot.")
    knots = sorted((int(k), float(v)) for k, v in schedule.items())
    if knots[0][0] != 0:
        knots.insert(0, (0, 0.0))
    xs = np.array([k for k, _ in knots], np.float32)
    ys = np.array([v for _, v in knots], np.float32)

    def multiplier(step):
        return jnp.interp(jnp.asarray(step, jnp.float32), xs, ys)

    return multiplier


def lr_multiplier(cfg, total_steps: int):
    """The schedule's multiplier of the peak learning rate, as a function of the update count."""
    pieces = _get(cfg, "piecewise_linear")
    if pieces:
        return piecewise_linear({int(k): v for k, v in dict(pieces).items()})
    warmup = int(_get(cfg, "warmup_steps", 0))
    decay = _get(cfg, "decay", "linear")
    if decay not in DECAYS:
        raise ValueError(f"optim.decay={decay!r}; expected one of {DECAYS}.")
    end = float(_get(cfg, "end_lr_ratio", 0.0))
    if warmup < 0:
        raise ValueError(f"optim.warmup_steps={warmup} must be >= 0.")

    def multiplier(step):
        step = jnp.asarray(step, jnp.float32)
        ramp = jnp.minimum(1.0, step / warmup) if warmup > 0 else jnp.ones_like(step)
        span = max(total_steps - warmup, 1)
        progress = jnp.clip((step - warmup) / span, 0.0, 1.0)
        if decay == "constant":
            after = jnp.ones_like(progress)
        elif decay == "linear":
            after = 1.0 - (1.0 - end) * progress
        else:
            after = end + (1.0 - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        return jnp.where(step < warmup, ramp, after)

    return multiplier


def learning_rate_schedule(cfg, total_steps: int):
    peak = float(_get(cfg, "lr"))
    multiplier = lr_multiplier(cfg, total_steps)
    return lambda step: peak * multiplier(step)


def _path(keypath) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in keypath)


def path_mask(params, patterns: Sequence[str], *, match_means: bool):
    """Tree of bools: `match_means` where any regex of `patterns` matches the parameter's "a/b/c" path."""
    compiled = [re.compile(p, re.IGNORECASE) for p in patterns]
    return jax.tree_util.tree_map_with_path(
        lambda kp, _: match_means if any(c.search(_path(kp)) for c in compiled) else not match_means, params)


class ScaleByAdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any


def scale_by_adam(b1=0.9, b2=0.999, eps=1e-6, bias_correction=True) -> optax.GradientTransformation:
    """Adam direction `m̂/(√v̂ + ε)`; with `bias_correction=False`, `m/(√v + ε)` (bert4keras LAMB pre-training).

    optax's `scale_by_adam` always corrects the bias, hence this transform.
    """
    if bias_correction:
        return optax.scale_by_adam(b1=b1, b2=b2, eps=eps)

    def init(params):
        zeros = jax.tree_util.tree_map(lambda p: jnp.zeros_like(p, jnp.float32), params)
        return ScaleByAdamState(jnp.zeros([], jnp.int32), zeros, jax.tree_util.tree_map(jnp.copy, zeros))

    def update(updates, state, params=None):
        del params
        mu = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * jnp.square(g), state.nu, updates)
        out = jax.tree_util.tree_map(lambda m, v: m / (jnp.sqrt(v) + eps), mu, nu)
        return out, ScaleByAdamState(optax.safe_increment(state.count), mu, nu)

    return optax.GradientTransformation(init, update)


def _param_multipliers(params, rules):
    """Tree of learning-rate multipliers from `[(regex, multiplier), ...]` (first match wins; default 1)."""
    compiled = [(re.compile(p, re.IGNORECASE), float(m)) for p, m in rules]

    def pick(keypath, _):
        path = _path(keypath)
        return next((m for c, m in compiled if c.search(path)), 1.0)

    return jax.tree_util.tree_map_with_path(pick, params)


def build_optimizer(cfg, total_steps: int, params=None) -> optax.GradientTransformation:
    """An optax transformation for `cfg` (the `optim` section of a training config)."""
    name = _get(cfg, "name", "adamw")
    if name not in OPTIMIZERS:
        raise ValueError(f"optim.name={name!r}; expected one of {OPTIMIZERS}.")
    lr = learning_rate_schedule(cfg, total_steps)
    weight_decay = float(_get(cfg, "weight_decay", 0.0))
    no_decay = tuple(_get(cfg, "no_decay", DEFAULT_NO_DECAY) or ())
    decay_mask = (lambda p: path_mask(p, no_decay, match_means=False)) if no_decay else None
    b1, b2 = float(_get(cfg, "b1", 0.9)), float(_get(cfg, "b2", 0.999))
    eps = float(_get(cfg, "eps", 1e-6))
    chain = []
    clip = _get(cfg, "clip_norm", 0.0)
    if clip:
        chain.append(optax.clip_by_global_norm(float(clip)))
    if name in ("adamw", "lamb"):
        chain.append(scale_by_adam(b1, b2, eps, bool(_get(cfg, "bias_correction", True))))
        if weight_decay:
            chain.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
        if name == "lamb":
            chain.append(optax.scale_by_trust_ratio())
        chain.append(optax.scale_by_learning_rate(lr))
    elif name == "adafactor":
        momentum = _get(cfg, "momentum", None)
        chain.append(optax.adafactor(
            learning_rate=lr, min_dim_size_to_factor=int(_get(cfg, "min_dim_size_to_factor", 128)),
            decay_rate=float(_get(cfg, "decay_rate", 0.8)), multiply_by_parameter_scale=True,
            clipping_threshold=_get(cfg, "clipping_threshold", 1.0), momentum=momentum,
            eps=float(_get(cfg, "eps1", 1e-30)), weight_decay_rate=weight_decay or None,
            weight_decay_mask=decay_mask if weight_decay else None))
    else:
        chain.append(optax.lion(lr, b1=b1, b2=float(_get(cfg, "b2", 0.99)), weight_decay=weight_decay,
                                mask=decay_mask))
    tx = optax.chain(*chain)

    rules = list(_get(cfg, "param_lr", []) or [])
    if rules:
        if params is None:
            raise ValueError("optim.param_lr needs the parameter tree to build its multipliers.")
        multipliers = _param_multipliers(params, rules)
        values = set(jax.tree_util.tree_leaves(multipliers))
        if 0.0 in values:
            # Frozen parameters get no optimizer state at all (what makes Ladder Side-Tuning cheap).
            labels = jax.tree_util.tree_map(lambda m: "frozen" if m == 0 else "trained", multipliers)
            tx = optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)
        if values - {0.0, 1.0}:
            tx = optax.chain(tx, _scale_by_tree(multipliers))

    accumulate = int(_get(cfg, "grad_accum_steps", 1))
    if accumulate > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accumulate)
    return tx


def _scale_by_tree(multipliers):
    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda u, m: u * m if m != 1.0 else u, updates, multipliers), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def residual_alpha(step, ramp_steps: int):
    """α of the α-residual `Norm(x + α·F(x))`: 0 → 1 linearly over `ramp_steps` updates, then 1 (post 8620)."""
    if ramp_steps <= 0:
        return jnp.ones([], jnp.float32)
    return jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / ramp_steps)
