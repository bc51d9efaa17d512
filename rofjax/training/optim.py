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

Every option is a key of `optim_config()`, the one place for its default; configs/base.py builds its `optim`
section from it, so each key can be set on the command line (`--config.optim.decay_rate=0.5`). One default
depends on the optimiser: `b2` stays None unless set, and None means the optimiser's published β₂ (the table
`PUBLISHED_B2`: 0.999 for AdamW and LAMB, 0.99 for Lion); Adafactor has no β₂ (`decay_rate` schedules its second
moment). ε₂, the floor of Adafactor's parameter scale, is optax's fixed 1e-3.

`build_optimizer`, `learning_rate_schedule` and `lr_multiplier` take the `optim` section, or a mapping of some of
its keys, which `optim_config` completes from the defaults; a key it does not know is an error that names it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from ml_collections.config_dict import placeholder

OPTIMIZERS = ("adamw", "lamb", "adafactor", "lion")
DECAYS = ("constant", "linear", "cosine")
# β₂ when optim.b2 is None, as published: Adam (Kingma & Ba 2015), LAMB (You et al. 2020), Lion (Chen et al. 2023).
PUBLISHED_B2 = {"adamw": 0.999, "lamb": 0.999, "lion": 0.99}


def optim_config(**overrides) -> ml_collections.ConfigDict:
    """The locked `optim` section: every option at its default, then `overrides` (KeyError on an unknown key)."""
    c = ml_collections.ConfigDict()
    c.name = "adamw"                         # adamw | lamb | adafactor | lion
    c.lr = 1e-3                              # peak learning rate
    c.warmup_steps = 0                       # linear ramp over this many updates (0: the peak lr from step 0)
    c.decay = "linear"                       # constant | linear | cosine, to end_lr_ratio at total_steps
    c.end_lr_ratio = 0.0                     # final lr / peak lr of the linear and cosine decays
    c.piecewise_linear = placeholder(dict)   # bert4keras {step: multiplier}; set, it replaces warmup and decay
    c.weight_decay = 0.01                    # decoupled weight decay; 0: none
    c.no_decay = (r"(^|/)bias$", r"(^|/)beta$", r"(^|/)gamma$", r"norm", r"scaleoffset")  # paths spared decay
    c.b1 = 0.9                               # adamw/lamb first-moment decay; lion's update interpolation
    c.b2 = placeholder(float)                # adamw/lamb second moment, lion momentum; None: PUBLISHED_B2[name]
    c.eps = 1e-6                             # adamw/lamb ε, added after the square root
    c.bias_correction = True                 # adamw/lamb m̂, v̂ (False: bert4keras LAMB pre-training)
    c.momentum = placeholder(float)          # adafactor first-moment decay; None: no momentum (bert4keras)
    c.decay_rate = 0.8                       # adafactor's β₂ at update t is 1 − t^(−decay_rate)
    c.eps1 = 1e-30                           # adafactor ε₁, added to squared gradients
    c.clipping_threshold = 1.0               # adafactor clips each update's RMS to this; 0: no clipping
    c.min_dim_size_to_factor = 128           # adafactor factors the second moment of tensors this wide
    c.clip_norm = 1.0                        # global gradient-norm clipping before the optimiser; 0: none
    c.grad_accum_steps = 1                   # micro-batches per update (the schedule counts updates)
    c.param_lr = ()                          # ((path regex, lr multiplier), ...): first match wins, 0 freezes
    c.lock()
    for key, value in overrides.items():
        if key not in c:
            raise KeyError(f"optim.{key} is not an optimiser option; the options are {', '.join(c.keys())}.")
        c[key] = value
    return c


def _complete(cfg) -> ml_collections.ConfigDict:
    return optim_config(**cfg)


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
    cfg = _complete(cfg)
    if cfg.piecewise_linear:
        # Keys come back as strings from JSON and the command line.
        return piecewise_linear({int(k): v for k, v in dict(cfg.piecewise_linear).items()})
    warmup, decay, end = int(cfg.warmup_steps), cfg.decay, float(cfg.end_lr_ratio)
    if decay not in DECAYS:
        raise ValueError(f"optim.decay={decay!r}; expected one of {DECAYS}.")
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
    cfg = _complete(cfg)
    peak = float(cfg.lr)
    multiplier = lr_multiplier(cfg, total_steps)
    return lambda step: peak * multiplier(step)


def _path(keypath) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in keypath)


def path_mask(params, patterns: Sequence[str], *, match_means: bool):
    """Tree of bools: `match_means` where any regex of `patterns` matches the parameter's "a/b/c" path."""
    compiled = compile_patterns(patterns, "optim.no_decay")
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


def compile_patterns(patterns, key: str) -> list[re.Pattern]:
    """`patterns` (a sequence of regexes, config key `key`) compiled, a malformed one named."""
    if isinstance(patterns, str):
        raise ValueError(f"config.{key}={patterns!r}; expected a tuple of regexes, e.g. (r'(^|/)bias$',).")
    compiled = []
    for index, pattern in enumerate(patterns):
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except (re.error, TypeError) as error:
            raise ValueError(f"config.{key}[{index}]={pattern!r} is not a regex ({error}).") from None
    return compiled


def param_lr_rules(rules) -> list[tuple[re.Pattern, float]]:
    """`optim.param_lr` checked: `((path regex, multiplier ≥ 0), ...)`."""
    checked = []
    for index, rule in enumerate(rules):
        if isinstance(rule, str) or not hasattr(rule, "__len__") or len(rule) != 2 or not isinstance(rule[0], str):
            raise ValueError(f"config.optim.param_lr[{index}]={rule!r}; expected a (path regex, multiplier) pair, "
                             f"e.g. --config.optim.param_lr=\"(('^encoder/', 0.1),)\".")
        try:
            pattern = re.compile(rule[0], re.IGNORECASE)
        except re.error as error:
            raise ValueError(f"config.optim.param_lr[{index}]: {rule[0]!r} is not a regex ({error}).") from None
        try:
            multiplier = float(rule[1])
        except (TypeError, ValueError):
            multiplier = float("nan")
        if not 0 <= multiplier < float("inf"):
            raise ValueError(f"config.optim.param_lr[{index}]={tuple(rule)!r}: the multiplier must be a number ≥ 0 "
                             f"(0 freezes).")
        checked.append((pattern, multiplier))
    return checked


def _param_multipliers(params, rules):
    """Tree of learning-rate multipliers from `[(regex, multiplier), ...]` (first match wins; default 1). A rule
    that matches no parameter is refused: a misspelt path would otherwise leave everything at the full rate."""
    compiled = param_lr_rules(rules)
    paths = [_path(keypath) for keypath, _ in jax.tree_util.tree_leaves_with_path(params)]
    for index, (pattern, _) in enumerate(compiled):
        if not any(pattern.search(path) for path in paths):
            raise ValueError(f"config.optim.param_lr[{index}] ({pattern.pattern!r}) matches no parameter; the "
                             f"paths look like {', '.join(paths[:3])}.")

    def pick(keypath, _):
        path = _path(keypath)
        return next((m for c, m in compiled if c.search(path)), 1.0)

    return jax.tree_util.tree_map_with_path(pick, params)


def build_optimizer(cfg, total_steps: int, params=None) -> optax.GradientTransformation:
    """An optax transformation for `cfg` (the `optim` section of a training config)."""
    cfg = _complete(cfg)
    name = cfg.name
    if name not in OPTIMIZERS:
        raise ValueError(f"optim.name={name!r}; expected one of {OPTIMIZERS}.")
    lr = learning_rate_schedule(cfg, total_steps)
    weight_decay = float(cfg.weight_decay)
    no_decay = tuple(cfg.no_decay or ())
    decay_mask = (lambda p: path_mask(p, no_decay, match_means=False)) if no_decay else None
    b1 = float(cfg.b1)
    b2 = float(cfg.b2) if cfg.b2 is not None else PUBLISHED_B2.get(name)
    chain = []
    if cfg.clip_norm:
        chain.append(optax.clip_by_global_norm(float(cfg.clip_norm)))
    if name in ("adamw", "lamb"):
        chain.append(scale_by_adam(b1, b2, float(cfg.eps), bool(cfg.bias_correction)))
        if weight_decay:
            chain.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
        if name == "lamb":
            chain.append(optax.scale_by_trust_ratio())
        chain.append(optax.scale_by_learning_rate(lr))
    elif name == "adafactor":
        chain.append(optax.adafactor(
            learning_rate=lr, min_dim_size_to_factor=int(cfg.min_dim_size_to_factor),
            decay_rate=float(cfg.decay_rate), multiply_by_parameter_scale=True,
            clipping_threshold=float(cfg.clipping_threshold) if cfg.clipping_threshold else None,
            momentum=None if cfg.momentum is None else float(cfg.momentum), eps=float(cfg.eps1),
            weight_decay_rate=weight_decay or None, weight_decay_mask=decay_mask if weight_decay else None))
    else:
        chain.append(optax.lion(lr, b1=b1, b2=b2, weight_decay=weight_decay, mask=decay_mask))
    tx = optax.chain(*chain)

    rules = list(cfg.param_lr or [])
    if rules:
        if params is None:
            raise ValueError("optim.param_lr needs the parameter tree to build its multipliers.")
        multipliers = _param_multipliers(params, rules)
        values = set(jax.tree_util.tree_leaves(multipliers))
        if 0.0 in values:
            # Frozen parameters get no optimizer state. This saves memory but not time: their gradients are still
            # formed, back-propagating through every layer below the lowest trained one. Ladder Side-Tuning
            # (`--config.lst`) is what avoids that: no gradient enters its backbone at all.
            labels = jax.tree_util.tree_map(lambda m: "frozen" if m == 0 else "trained", multipliers)
            tx = optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)
        if values - {0.0, 1.0}:
            tx = optax.chain(tx, _scale_by_tree(multipliers))

    accumulate = int(cfg.grad_accum_steps)
    if accumulate > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accumulate)
    return tx


def _scale_by_tree(multipliers):
    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda u, m: u * m if m != 1.0 else u, updates, multipliers), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
