"""The training loop: resolve the dataset, build the task, its input pipeline and its trainer, then step, log,
evaluate and save.

`run(config, workdir)` trains `config.task` on `config.data.dataset` and returns the last evaluation metrics. The
run folder (`rofjax.checkpoint.run.RunFolder`) holds checkpoints, the best parameters, `metrics.jsonl`,
`eval_metrics.jsonl` and TensorBoard scalars. Rerunning the same command resumes from the latest complete
checkpoint with the iterator where it was: the resumed run sees exactly the batches it would have seen. SIGTERM
saves the current step and exits cleanly. A non-finite loss stops the run naming the step
(`config.train.nonfinite="stop"`), or the update is skipped (`"skip"`).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time

import jax
import numpy as np

from rofjax.checkpoint.run import (
    RunFolder,
    check_vocabulary_matches,
    is_remote,
    load_encoder,
    local_path,
    readable_path,
)
from rofjax.data.datasets import get_dataset
from rofjax.data.pipeline import train_iterator
from rofjax.models.ladder import fingerprint
from rofjax.parallel.mesh import global_batch, mesh_from_config, rules_from_config
from rofjax.training.fisher import fisher_side_init
from rofjax.training.state import TrainState
from rofjax.training.tasks import build_task
from rofjax.training.tasks.mlm import LONG_DOCUMENTS

# Peak dense bf16 FLOP/s per device, for MFU. Unknown devices (CPUs) report no MFU.
PEAK_FLOPS = {"TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v5": 459e12,
              "TPU v6 lite": 918e12, "NVIDIA H100 80GB HBM3": 989e12, "NVIDIA H200": 989e12, "NVIDIA A100-SXM4-80GB": 312e12,
              "NVIDIA A100-SXM4-40GB": 312e12}

__all__ = ["PEAK_FLOPS", "NonFiniteLossError", "build_task", "build_trainer", "check_batch_fits_mesh", "evaluate",
           "run"]


class NonFiniteLossError(RuntimeError):
    pass


def validate_config(config) -> None:
    """Values no run can go on with, refused before any work, naming the key."""
    train, eval_ = config.train, config.eval
    checks = [("train.batch_size", train.batch_size >= 1, "≥ 1"), ("train.log_every", train.log_every >= 1, "≥ 1"),
              ("train.save_every", train.save_every >= 1, "≥ 1"),
              ("train.keep_checkpoints", train.keep_checkpoints >= 1, "≥ 1 (0 would delete every checkpoint)"),
              ("train.total_steps", train.total_steps >= 0, "≥ 0"), ("train.epochs", train.epochs >= 0, "≥ 0"),
              ("train.nonfinite", train.nonfinite in ("stop", "skip"), "'stop' or 'skip'"),
              ("train.max_consecutive_skips", train.max_consecutive_skips >= 1, "≥ 1"),
              ("eval.every", eval_.every >= -1, "≥ -1 (-1: every epoch, 0: at the end)"),
              ("eval.examples", eval_.examples >= 0, "≥ 0"),
              ("eval.best_mode", eval_.best_mode in ("max", "min"), "'max' or 'min'"),
              # [CLS] + one token + [SEP]: a shorter window holds no text at all.
              ("data.max_length", config.data.max_length >= 3, "≥ 3"),
              ("data.prefetch", config.data.get("prefetch", 2) >= 0, "≥ 0 (0: no background thread)"),
              ("data.workers", config.data.get("workers", 0) >= 0, "≥ 0 (0: batches made in this process)"),
              ("optim.lr", config.optim.lr >= 0, "≥ 0 (a negative rate climbs the loss)"),
              ("data.max_documents", config.data.get("max_documents", 1) >= 1, "≥ 1 (1: one document per row)"),
              ("data.long_documents", config.data.get("long_documents", "chunk") in LONG_DOCUMENTS,
               "'chunk' (every row of a long document) or 'cut' (its first row)"),
              ("data.mask_rate", 0 < config.data.get("mask_rate", 0.15) <= 1,
               "in (0, 1] (the share of words masked; 0 would train on nothing)")]
    for key, ok, expected in checks:
        if not ok:
            value = config[key.split(".")[0]][key.split(".")[1]]
            raise ValueError(f"config.{key}={value!r}; expected {expected}.")
    if (config.get("lst_lr") or 0) < 0:
        raise ValueError(f"config.lst_lr={config.get('lst_lr')!r}; expected ≥ 0 (0: optim.lr).")
    from rofjax.training.optim import compile_patterns, param_lr_rules

    compile_patterns(config.optim.get("no_decay") or (), "optim.no_decay")
    param_lr_rules(config.optim.get("param_lr") or ())
    lst_init = config.get("lst_init", "random")
    if lst_init not in ("random", "fisher"):
        raise ValueError(f"config.lst_init={lst_init!r}; expected 'random' or 'fisher'.")
    if lst_init == "fisher":
        if config.get("lst") != "gated":
            raise ValueError(f"config.lst_init='fisher' prunes the backbone into a gated side network; it needs "
                             f"config.lst='gated' (config.lst={config.get('lst')!r}).")
        if config.get("lst_fisher_examples", 0) < 1:
            raise ValueError(f"config.lst_fisher_examples={config.get('lst_fisher_examples')!r}; expected ≥ 1.")
        if jax.process_count() > 1:
            raise ValueError("config.lst_init='fisher' runs on one host: start the run with lst_init='fisher' on a "
                             "single host, then resume it on the pod (the side network is in its checkpoints).")


def check_batch_fits_mesh(config, mesh) -> None:
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    if config.train.batch_size % shards:
        raise ValueError(f"config.train.batch_size={config.train.batch_size} must be a multiple of data × fsdp = "
                         f"{shards} (mesh {dict(mesh.shape)}); change the batch size or config.mesh.")


def build_trainer(config, task, mesh, total_steps: int):
    """The `Trainer` of `config`: its optimizer and schedule over `total_steps`, on `mesh` under its rules."""
    from flax import linen as nn

    from rofjax.training.optim import build_optimizer, learning_rate_schedule
    from rofjax.training.state import Trainer, abstract_params, parse_compiler_options, trained_params

    rules = rules_from_config(config)
    optim = config.optim
    if task.model_config.lst != "none" and config.get("lst_lr"):
        optim = optim.copy_and_resolve_references()
        optim.lr = config.get("lst_lr")
    params = trained_params(task, nn.unbox(abstract_params(task, config.train.batch_size)))
    tx = build_optimizer(optim, total_steps, params=params)
    return Trainer(task, tx, mesh, schedule=learning_rate_schedule(optim, total_steps),
                   ema_decay=config.train.ema_decay, skip_nonfinite=config.train.nonfinite == "skip", rules=rules,
                   dropout_prng=config.train.get("dropout_prng", "threefry"),
                   compiler_options=parse_compiler_options(config.train.get("compiler_options", "")))


def evaluate(trainer, task, params, records, config) -> dict:
    """`task.evaluate` on the first `config.eval.examples` records (all when 0), traced under the mesh and rules."""
    limit = min(len(records), config.eval.examples or len(records))
    subset = [records[index] for index in range(limit)]        # tfds data sources take no slices
    with trainer.context():
        result = task.evaluate(params, subset, config.train.batch_size)
    if result and task.metric_names and set(result) != set(task.metric_names):
        raise RuntimeError(f"{type(task).__name__}.evaluate returned the metrics {sorted(result)}, but the task "
                           f"declares {sorted(task.metric_names)} (its metric_names): correct the declaration.")
    return result


def check_best_metric(config, task) -> None:
    """Refuse, before any training, a `config.eval.best_metric` the task's evaluation never reports."""
    best = config.eval.best_metric
    if task.metric_names and best not in task.metric_names:
        raise KeyError(f"config.eval.best_metric={best!r} is not among the evaluation metrics of "
                       f"{type(task).__name__}: {', '.join(task.metric_names)}.")


def _strict(row: dict) -> dict:
    """Non-finite numbers as null, so every row is strict JSON (jq and friends reject NaN)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def _summary_writer_class():
    """tensorboardX's `SummaryWriter`, imported without PyTorch: tensorboardX imports torch whenever it is installed
    (only to accept torch tensors, which a run never passes), and that import costs seconds at every start."""
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None                     # makes `import torch` raise ImportError, which tensorboardX catches
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


class _Reporter:
    """Where metrics go: `metrics.jsonl` / `eval_metrics.jsonl`, TensorBoard and the progress bar (process 0)."""

    def __init__(self, run: RunFolder, config, total: int, initial: int):
        from tqdm import tqdm

        SummaryWriter = _summary_writer_class()

        self.lead = jax.process_index() == 0
        self.writer = SummaryWriter(run.path("tensorboard")) if self.lead else None
        self.metrics = open(run.metrics_path, "a", encoding="utf-8") if self.lead else None
        self.eval_path = run.eval_metrics_path
        self.progress = tqdm(total=total, initial=initial, desc=config.task, unit="step", file=sys.stderr,
                             disable=not self.lead or not config.train.progress_bar)

    def train_row(self, row: dict) -> None:
        if self.lead:
            self.metrics.write(json.dumps(_strict(row)) + "\n")
            self.metrics.flush()
            for name, value in row.items():
                if name != "step":
                    self.writer.add_scalar(f"train/{name}", value, row["step"])
        self.progress.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row.get('lr', 0):.2e}",
                                  tok_s=f"{row['tokens_per_s']:.0f}",
                                  **({"mfu": f"{row['mfu']:.1%}"} if "mfu" in row else {}))

    def eval_row(self, step: int, result: dict) -> None:
        if not self.lead:
            return
        with open(self.eval_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(_strict({"step": step, **result})) + "\n")
        for name, value in result.items():
            self.writer.add_scalar(f"eval/{name}", value, step)
        self.progress.write(f"step {step}: eval " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                             for k, v in result.items()))

    def close(self) -> None:
        self.progress.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.writer is not None:
            self.writer.close()


def run(config, workdir: str) -> dict:
    validate_config(config)
    if not is_remote(workdir):               # a bucket's run is a mirrored local folder (RunFolder)
        workdir = local_path(workdir, "--workdir")
        if os.path.exists(workdir) and not os.path.isdir(workdir):
            raise FileExistsError(f"--workdir {workdir} is a file, not a folder.")
    data, train, batch_size = config.data, config.train, config.train.batch_size
    if data.data_dir and is_remote(data.data_dir):
        # A bucket's dataset folder is read from a local copy (tfds-prepared data as much as your own files).
        data.data_dir = readable_path(data.data_dir, "config.data.data_dir")
    if config.get("lst") and not config.train.init_checkpoint:
        raise ValueError(f"config.lst={config.lst!r} trains a side network on a frozen backbone: set "
                         f"config.train.init_checkpoint to the backbone's checkpoint.")
    # The run folder is claimed first, so that a second run on it is refused before any work.
    folder = RunFolder(workdir, keep=train.keep_checkpoints, best_metric=config.eval.best_metric,
                       best_mode=config.eval.best_mode).claim()
    try:
        mesh = mesh_from_config(config)
        check_batch_fits_mesh(config, mesh)

        # Data and task.
        spec = get_dataset(data.dataset)
        task = build_task(config)
        check_best_metric(config, task)
        if train.init_checkpoint:
            check_vocabulary_matches(train.init_checkpoint, task.tokenizer.vocab_path)
        train_records = spec.split("train", data.data_dir, config.seed)
        eval_records = spec.split("validation", data.data_dir, config.seed)
        if task.expands_records:
            train_records = [example for record in train_records for example in task.expand(record)]
        feeding = {"prefetch": data.get("prefetch", 2), "workers": data.get("workers", 0)}
        iterator = train_iterator(task, train_records, batch_size=batch_size, seed=config.seed, **feeding)

        steps_per_epoch = max(1, -(-len(train_records) // batch_size))
        total = int(train.total_steps) if train.total_steps > 0 else int(train.epochs * steps_per_epoch)
        if total <= 0:
            raise ValueError("config.train.total_steps or config.train.epochs must be positive.")
        eval_every = steps_per_epoch if config.eval.every < 0 else config.eval.every
        trainer = build_trainer(config, task, mesh, total)
    except BaseException:
        folder.close()
        raise

    # State: resumed from the run folder, or fresh (optionally with a pre-trained encoder).
    reporter, previous = None, signal.getsignal(signal.SIGTERM)
    try:
        folder.open()
        abstract = trainer.abstract_state(batch_size)
        state = folder.restore(abstract.checkpointed(), iterator)
        fresh = state is None
        if state is not None:
            state = TrainState.from_saved(state)
            print(f"resumed from {folder.path('checkpoints')}/{folder.latest_step()}", flush=True)
        else:
            # A fresh start, with a fresh iterator: a damaged checkpoint may have moved it before failing to restore.
            iterator.close()
            iterator = train_iterator(task, train_records, batch_size=batch_size, seed=config.seed, **feeding)
            state = trainer.init_state(config.seed, batch_size)
            if train.init_checkpoint and abstract.frozen is None:
                state = state.replace(params=load_encoder(train.init_checkpoint, state.params))
                print(f"initialised the encoder from {train.init_checkpoint}", flush=True)
        if abstract.frozen is not None:
            # Ladder Side-Tuning: the backbone is read from its own checkpoint, fresh or resumed, never stored here.
            state = state.replace(frozen=load_encoder(train.init_checkpoint, abstract.frozen))
            folder.record_backbone(train.init_checkpoint, fingerprint(state.frozen))
            print(f"Ladder Side-Tuning ({task.model_config.lst}) on the frozen backbone {train.init_checkpoint}",
                  flush=True)
            if fresh and config.get("lst_init", "random") == "fisher":
                # Its own pass over the data: the training iterator's position is part of the checkpoint.
                scored = train_iterator(task, train_records, batch_size=batch_size, seed=config.seed + 1)
                started = time.perf_counter()
                try:
                    state, seen = fisher_side_init(config, task, state, scored)
                finally:
                    scored.close()
                print(f"side network pruned from the backbone by the Fisher information of {seen} training "
                      f"examples ({time.perf_counter() - started:.1f} s)", flush=True)
        folder.save_model_config(task.model_config)      # only once the folder's checkpoints fit this model
        folder.record_task_inputs(task.tokenizer.vocab_path, spec.labels(spec.folder(data.data_dir, config.seed)))
        count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))
        print(f"trainable parameters: {count(state.params)}" + (f" (frozen backbone: {count(state.frozen)})"
                                                                if state.frozen is not None else ""), flush=True)

        stop = {"signal": None}

        def on_sigterm(signum, frame):
            stop["signal"] = signum

        previous = signal.signal(signal.SIGTERM, on_sigterm)
        step = int(jax.device_get(state.step))
        reporter = _Reporter(folder, config, total, step)
        peak = train.peak_flops or PEAK_FLOPS.get(jax.devices()[0].device_kind)
        flops_per_example = task.flops_per_example()
        last_eval: dict = {}
        skipped = {"total": 0, "in_a_row": 0}

        def run_eval(current_step: int) -> dict:
            ema = bool(train.ema_decay)
            result = evaluate(trainer, task, state.full_params(ema=ema), eval_records, config)
            if skipped["total"]:
                result["skipped_updates"] = skipped["total"]
            folder.check_best_metric(result)            # before the row is logged, so that a rerun evaluates again
            reporter.eval_row(current_step, result)
            finite = all(np.isfinite(v) for v in result.values() if isinstance(v, (int, float)))
            # Parameters right after a skipped (non-finite) update, or scoring non-finite, are never kept as best.
            if finite and not skipped["in_a_row"]:
                folder.save_best(current_step, state.ema_params if ema else state.params, config, result)
            return result

        if step >= total:                               # a finished run, rerun: report, do not evaluate again
            done = folder.eval_row(step)
            if done is not None:
                return {k: v for k, v in done.items() if k != "step"}

        window = {"start": time.perf_counter(), "tokens": 0}

        def settle(settled_step: int, metrics, tokens: int) -> None:
            """Check and report one step's metrics. Called once the step after it has been dispatched, so that
            reading them back (which waits for the device) leaves the device a step to compute meanwhile."""
            metrics = jax.device_get(metrics)
            window["tokens"] += tokens
            if not bool(metrics["finite"]):
                if train.nonfinite != "skip":
                    raise NonFiniteLossError(f"non-finite loss or gradient at step {settled_step} (loss "
                                             f"{float(metrics['loss'])}, gradient norm {float(metrics['grad_norm'])});"
                                             f" the update was not saved. Lower optim.lr or set "
                                             f"train.nonfinite='skip'.")
                skipped["total"] += 1
                skipped["in_a_row"] += 1
                if skipped["in_a_row"] >= train.max_consecutive_skips:
                    raise NonFiniteLossError(f"{skipped['in_a_row']} updates in a row skipped for a non-finite loss "
                                             f"or gradient "
                                             f"(step {settled_step}; {skipped['total']} in all); lower optim.lr. The "
                                             f"last checkpoint holds the parameters before them.")
            else:
                skipped["in_a_row"] = 0
            reporter.progress.update()
            if settled_step % train.log_every == 0 or settled_step == total:
                elapsed = max(time.perf_counter() - window["start"], 1e-9)
                row = {"step": settled_step, **{k: float(v) for k, v in metrics.items() if k != "finite"},
                       "tokens_per_s": window["tokens"] / elapsed}
                if not bool(metrics["finite"]):
                    row["skipped"] = True
                if peak:
                    row["mfu"] = (batch_size * train.log_every / elapsed) * flops_per_example / (
                        peak * jax.device_count())
                reporter.train_row(row)
                window["start"], window["tokens"] = time.perf_counter(), 0

        # One step stays in flight: step N's metrics are read after step N + 1 is dispatched. Evaluation, saving
        # and stopping need the state of the step itself (the next step consumes it), so before them every step
        # is settled: no checkpoint holds an update whose loss was not checked.
        pending = None
        while step < total:
            local = next(iterator)
            state, metrics = trainer.train_step(state, global_batch(local, mesh))
            step += 1
            if pending is not None:
                settle(*pending)
            pending = (step, metrics, task.tokens(local) * jax.process_count())
            evaluating = bool(eval_every) and step % eval_every == 0 and step < total
            saving = step % train.save_every == 0 or step == total or stop["signal"] is not None
            if evaluating or saving:
                settle(*pending)
                pending = None
            if evaluating:
                last_eval = run_eval(step)
            if saving:
                folder.save(step, state.checkpointed(), iterator, config, force=stop["signal"] is not None)
            if stop["signal"] is not None:
                folder.wait()
                reporter.progress.write(f"received signal {stop['signal']}: saved step {step}, exiting")
                return last_eval
        last_eval = run_eval(step)
        if folder.latest_step() != step:
            folder.save(step, state.checkpointed(), iterator, config, force=True)
        folder.wait()
        if skipped["total"]:
            print(f"warning: {skipped['total']} of {total} updates were skipped for a non-finite loss or gradient "
                  f"(train.nonfinite='skip').", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
        iterator.close()                        # stops its prefetch thread, which would otherwise wait forever
        if reporter is not None:
            reporter.close()
        folder.close()
    return last_eval
