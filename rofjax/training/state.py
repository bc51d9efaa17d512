"""Train state and the jitted, sharded train step.

`TrainState` holds the update count, fp32 master parameters, the optimizer state, the dropout key (raw uint32
key data, so it checkpoints like any array) and optionally an EMA of the parameters. Compute dtype is the model
config's `dtype` (bf16 activations with fp32 master weights when `dtype="bfloat16"`, `param_dtype="float32"`).

The step is `jax.jit(step, in_shardings=(state, batch), out_shardings=(state, replicated), donate_argnums=0)`;
parameter shardings come from the modules' logical axis names and the rules, and every optimizer-state leaf
shaped like its parameter is split like it. Init, train and eval steps are traced under the mesh and the
logical-axis rules (`Trainer.context()`; tasks evaluate and decode under it too), so the modules' activation constraints bind. Each step folds the step
number into the dropout key, and dropout masks are drawn for the global (sharded) arrays, so every device gets its
own part of one mask and a sharded step equals the single-device step.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import NamedSharding

from rofjax.models.ladder import merge_backbone, split_backbone
from rofjax.parallel.mesh import (
    LOGICAL_RULES,
    batch_sharding,
    logical_shardings,
    replicated,
    sharding_context,
)


@flax.struct.dataclass
class SavedState:
    """What a checkpoint holds: the train state without its frozen parameters (they come from their own
    checkpoint). Its fields are the checkpoint layout every run folder has used, so older runs resume."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    ema_params: Any = None


@flax.struct.dataclass
class TrainState:
    """`params` are the trained parameters; `frozen` the ones a Ladder Side-Tuning model never trains (its
    backbone): not differentiated, no optimizer state, not checkpointed."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    ema_params: Any = None
    frozen: Any = None

    def full_params(self, *, ema: bool = False):
        """Every parameter of the model (trained and frozen), as `task` methods take them."""
        return merge_backbone(self.ema_params if ema else self.params, self.frozen)

    def checkpointed(self) -> SavedState:
        return SavedState(step=self.step, params=self.params, opt_state=self.opt_state, rng=self.rng,
                          ema_params=self.ema_params)

    @classmethod
    def from_saved(cls, saved: SavedState, frozen=None) -> TrainState:
        return cls(step=saved.step, params=saved.params, opt_state=saved.opt_state, rng=saved.rng,
                   ema_params=saved.ema_params, frozen=frozen)


def _finite_tree(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def abstract_params(task, batch_size: int):
    """The task's parameters as shape structs (boxed with their logical axis names), without computing them."""
    batch = task.init_batch(batch_size)
    return jax.eval_shape(lambda: task.init_params(jax.random.key(0), batch))


def trained_params(task, params):
    """The part of a task's parameter tree (or any tree shaped like it) that training updates."""
    return split_backbone(params, task.model_config)[0]


DROPOUT_PRNGS = ("threefry", "rbg", "unsafe_rbg")


def step_dropout_key(key_data, step, impl: str = "threefry"):
    """The dropout key of training step `step`: the state's threefry key folded with the step, then, for the
    `rbg` implementations, turned into an `impl` key whose bits come from XLA's RngBitGenerator (Philox on GPU,
    the hardware generator on TPU), far cheaper than threefry's hash for the many masks of a step. Same state,
    same step, same impl: the same key, so resumption stays exact."""
    if impl not in DROPOUT_PRNGS:
        raise ValueError(f"Unknown dropout PRNG {impl!r}; expected one of {DROPOUT_PRNGS}.")
    key = jax.random.fold_in(jax.random.wrap_key_data(key_data), step)
    if impl == "threefry":
        return key
    return jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl=impl)


# Measured on an H100 (jax 0.11.2, RoFormerV2 base MLM through this Trainer, 32 × 512): with XLA's Triton GEMM
# fusions off every matmul goes to cuBLAS and the step took 36.9 ms instead of 38.6 (README, Accelerators).
GPU_COMPILER_OPTIONS = {"xla_gpu_enable_triton_gemm": False}
# cuDNN's kernel dropout aborted every full training step it ran in (`cuda_dnn.cc` "Check failed:
# local_device_ordinal"); with cuDNN and custom calls kept out of XLA's command buffers the same step ran
# (H100, 2026-11-27: 31.0 ms).
GPU_KERNEL_DROPOUT_OPTIONS = {"xla_gpu_enable_command_buffer": "FUSION,CUBLAS,CUBLASLT"}


def default_compiler_options(platform: str, model_config=None) -> dict:
    """XLA options rofjax compiles the train step with on `platform`: none on CPU and TPU; on a GPU, cuBLAS for
    every matmul, and command buffers without cuDNN where cuDNN's kernel dropout runs. `train.compiler_options`
    adds to or overrides them."""
    if platform not in ("gpu", "cuda", "rocm"):
        return {}
    options = dict(GPU_COMPILER_OPTIONS)
    if model_config is not None and getattr(model_config, "fused_attention_dropout", False) \
            and getattr(model_config, "attention_dropout_rate", 0.0) > 0:
        options.update(GPU_KERNEL_DROPOUT_OPTIONS)
    return options


def parse_compiler_options(text: str) -> dict:
    """`train.compiler_options`: space-separated `name=value` (`true`/`false` → bool, digits → int, else the
    string, as XLA parses a flag) into the `compiler_options` of `jax.jit`."""
    options = {}
    for item in (text or "").split():
        name, sep, value = item.partition("=")
        name = name.lstrip("-")
        if not sep or not name:
            raise ValueError(f"train.compiler_options: {item!r} is not name=value (e.g. "
                             "'xla_gpu_enable_triton_gemm=true')")
        lowered = value.lower()
        if lowered in ("true", "false"):
            options[name] = lowered == "true"
        elif value.lstrip("-").isdigit():
            options[name] = int(value)
        else:
            options[name] = value
    return options


class Trainer:
    """Builds the sharded initial state and the jitted steps of one task on one mesh."""

    def __init__(self, task, tx: optax.GradientTransformation, mesh, *, schedule=None, ema_decay: float = 0.0,
                 skip_nonfinite: bool = False, rules=LOGICAL_RULES, dropout_prng: str = "threefry",
                 compiler_options: dict | None = None):
        if dropout_prng not in DROPOUT_PRNGS:
            raise ValueError(f"Unknown dropout PRNG {dropout_prng!r} (config train.dropout_prng); expected one of "
                             f"{DROPOUT_PRNGS}.")
        self.dropout_prng = dropout_prng
        self.task, self.tx, self.mesh = task, tx, mesh
        self.rules = tuple(rules)
        self.schedule = schedule
        self.ema_decay = float(ema_decay)
        self.skip_nonfinite = skip_nonfinite
        platform = mesh.devices.flat[0].platform
        self.compiler_options = {**default_compiler_options(platform, getattr(task, "model_config", None)),
                                 **dict(compiler_options or {})}
        self._train_step = None

    def context(self):
        """The mesh and logical-axis rules, in force while anything of this trainer's is traced or run."""
        return sharding_context(self.mesh, self.rules)

    # State ----------------------------------------------------------------------------------------------------
    def abstract_params(self, batch_size: int):
        return abstract_params(self.task, batch_size)

    def state_shardings(self, batch_size: int):
        with self.context():
            boxed = self.abstract_params(batch_size)
        # Outside the context: unboxing under a mesh would apply the parameters' constraints to shape structs.
        param_shardings = logical_shardings(boxed, self.mesh, self.rules)
        abstract = jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                          nn.unbox(boxed), param_shardings)
        rep = replicated(self.mesh)
        config = self.task.model_config
        abstract, _ = split_backbone(abstract, config)
        param_shardings, frozen_shardings = split_backbone(param_shardings, config)
        opt_shardings = self._optimizer_shardings(abstract, param_shardings, rep)
        ema = param_shardings if self.ema_decay else None
        return TrainState(step=rep, params=param_shardings, opt_state=opt_shardings, rng=rep, ema_params=ema,
                          frozen=frozen_shardings)

    def _optimizer_shardings(self, abstract_params, param_shardings, rep):
        """Each optimizer-state leaf shaped like its parameter (moments, EMA) is split like it; the rest (counts,
        factored second moments) is replicated. XLA's own choice for `tx.init` replicates zero-filled moments,
        which would keep a full copy of the optimizer state on every device."""
        abstract_state = jax.eval_shape(self.tx.init, abstract_params)
        like_param = lambda leaf, sharding, param: sharding if getattr(leaf, "shape", None) == param.shape else rep
        try:
            return optax.tree_map_params(self.tx, like_param, abstract_state, param_shardings, abstract_params,
                                         transform_non_params=lambda _: rep,
                                         is_leaf=lambda x: isinstance(x, NamedSharding))
        except (ValueError, TypeError):
            # A transformation optax cannot map: fall back to what XLA picks for its init.
            chosen = jax.jit(self.tx.init).lower(abstract_params).compile().output_shardings
            return jax.tree_util.tree_map(self._on_mesh, chosen)

    def _init_fn(self, seed: int, batch_size: int):
        batch = self.task.init_batch(batch_size)

        def init():
            init_key, dropout_key = jax.random.split(jax.random.key(seed))
            params, frozen = split_backbone(nn.unbox(self.task.init_params(init_key, batch)),
                                            self.task.model_config)
            return TrainState(step=jnp.zeros([], jnp.int32), params=params, opt_state=self.tx.init(params),
                              rng=jax.random.key_data(dropout_key),
                              ema_params=params if self.ema_decay else None, frozen=frozen)

        return init

    def _on_mesh(self, sharding):
        """XLA's choice for an optimizer-state leaf, expressed on our mesh (counters come back replicated on
        the default devices, which may not be the mesh's)."""
        if isinstance(sharding, NamedSharding) and sharding.mesh == self.mesh:
            return sharding
        if sharding.is_fully_replicated:
            return replicated(self.mesh)
        if isinstance(sharding, NamedSharding):
            return NamedSharding(self.mesh, sharding.spec)
        raise ValueError(f"Cannot place optimizer state with sharding {sharding} on mesh {self.mesh}.")

    def init_state(self, seed: int, batch_size: int) -> TrainState:
        """A fresh state, created directly in its shards (no host copy of the full model)."""
        shardings = self.state_shardings(batch_size)
        with self.context():
            return jax.jit(self._init_fn(seed, batch_size), out_shardings=shardings)()

    def abstract_state(self, batch_size: int) -> TrainState:
        """Shapes, dtypes and shardings of the state, without allocating it (the target of a restore)."""
        with self.context():
            shapes = jax.eval_shape(self._init_fn(0, batch_size))
        return jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes,
                                      self.state_shardings(batch_size))

    # Steps ----------------------------------------------------------------------------------------------------
    def _batch_shardings(self, batch: dict):
        return {k: batch_sharding(self.mesh, len(v.shape)) for k, v in batch.items()}

    def train_step(self, state: TrainState, batch: dict):
        if self._train_step is None:
            self._train_step = self._build_train_step(state, batch)
        with self.context():
            return self._train_step(state, batch)

    def lower_train_step(self, state, batch: dict):
        """The train step lowered for (possibly abstract) `state` and `batch`, under the mesh and rules."""
        step = self._build_train_step(state, batch)
        with self.context():
            return step.lower(state, batch)

    def _build_train_step(self, state, batch):
        task, tx = self.task, self.tx

        def step_fn(state: TrainState, batch):
            key = step_dropout_key(state.rng, state.step, self.dropout_prng)

            def loss_fn(params):
                # Frozen parameters enter as constants: no gradient is formed for them.
                return task.loss(merge_backbone(params, state.frozen), batch, key, state.step)

            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            grad_norm = optax.tree.norm(grads)
            finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
            if self.skip_nonfinite:
                params = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old), params, state.params)
                opt_state = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old), opt_state,
                                                   state.opt_state)
            ema = state.ema_params
            if self.ema_decay:
                ema = jax.tree_util.tree_map(lambda e, p: self.ema_decay * e + (1 - self.ema_decay) * p, ema, params)
            metrics = {"loss": loss, "grad_norm": grad_norm, "finite": finite, **aux}
            if self.schedule is not None:
                metrics["lr"] = self.schedule(state.step)
            new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema)
            return new_state, metrics

        state_shardings = jax.tree_util.tree_map(lambda x: x.sharding, state)
        return jax.jit(step_fn, in_shardings=(state_shardings, self._batch_shardings(batch)),
                       out_shardings=(state_shardings, replicated(self.mesh)), donate_argnums=0,
                       compiler_options=self.compiler_options or None)
