"""`rofjax` command line: the training programs, conversions, export and prediction.

    rofjax demo --workdir DIR             # NER on People's Daily: train, score, export, run on new text (train.demo)
    rofjax finetune --config clue/tnews --workdir DIR [--config.key=value ...]     (train.finetune)
    rofjax pretrain --config pretrain/tiny_mlm --workdir DIR                       (train.pretrain)
    rofjax compile --config pretrain/roformer_v2_large --topology v5e:16x16 --out DIR   (train.compile)
    rofjax submit --config clue/tnews --workdir DIR       # a leaderboard prediction file (train.predict)

    rofjax export workdir/ner models/ner             # a run's self-contained model folder (rofjax.export)
    rofjax predict --model models/ner --task ner --input texts.txt --output entities.jsonl
    echo 李鹏在北京会见了美国客人 | rofjax predict --model models/ner --task ner

    rofjax convert --from bert4keras --model roformer_v2 --config bert_config.json --checkpoint bert_model.ckpt \
        --out DIR                                   # → DIR/params (orbax) + DIR/model_config.json
    rofjax convert --from huggingface --checkpoint HF_FOLDER --out DIR
    rofjax convert --from rofjax --checkpoint DIR --to huggingface --out HF_DIR     (or --to bert4keras)

`--model` is bert (alias roberta: Google BERT and HFL RoBERTa-wwm-ext), roformer, roformer_v2 or gau_alpha. A
RoFormerV2 or GAU-α model goes to Hugging Face only with `--hf-target junnyu` (JunnYu's `roformer` / `gau_alpha`
packages): stock transformers would load it into RoFormerModel with re-initialised weights.

Every conversion ends with a parity line: the largest |Δ| between hidden states of the converted model and of a
reference on a fixed probe batch with padding (transformers' BertModel or RoFormerModel when converting a Hugging
Face BERT or RoFormer and it is installed; otherwise the written files read back from disk).

The parameters are checked against the model their config describes before anything is written; the output is
written to `OUT.tmp-<pid>` and renamed to `OUT` only once parity is within `--tolerance`, so a failed conversion
leaves `OUT` as it was. An existing `OUT` is replaced only with `--overwrite`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

import numpy as np

SOURCES = ("bert4keras", "huggingface", "rofjax")
TARGETS = ("rofjax", "huggingface", "bert4keras")


def _probe_batch(vocab_size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab_size, size=(2, 16))
    ids[0, 11:] = 0
    segments = np.zeros_like(ids)
    segments[1, 8:] = 1
    return ids, segments


def _hidden(config, params, ids, segments):
    from rofjax.models import Encoder

    return np.asarray(Encoder(config).apply({"params": params}, ids, segments), np.float64)


TRANSFORMERS_MODELS = {"bert": "BertModel", "roformer": "RoFormerModel"}


def _transformers_reference(folder, config, ids, segments):
    if config.family not in TRANSFORMERS_MODELS:
        return None
    try:
        import torch
        import transformers
    except ImportError:
        return None
    model = getattr(transformers, TRANSFORMERS_MODELS[config.family]).from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(segments),
                    attention_mask=torch.tensor((ids != 0).astype(np.int64)))
    return out.last_hidden_state.numpy().astype(np.float64)


OPTIONAL_GROUPS = ("mlm", "pooler")


def _model_shapes(config) -> dict[str, tuple[int, ...]]:
    import jax
    import jax.numpy as jnp
    from flax import linen as nn

    from rofjax.checkpoint.tree import flatten
    from rofjax.models import Encoder

    model = Encoder(config)
    ids = jnp.ones((1, 4), jnp.int32)

    def init():
        heads = model.init(jax.random.key(0), ids, method=Encoder.masked_lm)["params"]
        pooler = model.init(jax.random.key(0), jnp.ones((1, 4, config.hidden_size)), method=Encoder.pool)["params"]
        return nn.unbox({**heads, **pooler})

    return {path: tuple(leaf.shape) for path, leaf in flatten(jax.eval_shape(init)).items()}


def _check_fits(config, params, params_label: str, config_label: str) -> None:
    """Fail before anything is written when `params` cannot be applied to the model `config` describes."""
    from flax import linen as nn

    from rofjax.checkpoint import CheckpointMismatchError
    from rofjax.checkpoint.tree import flatten

    want = _model_shapes(config)
    have = {path: tuple(np.shape(leaf)) for path, leaf in flatten(nn.unbox(params)).items()}
    present_groups = {path.split("/", 1)[0] for path in have}
    problems = [f"missing tensor '{path}' (shape {shape})" for path, shape in want.items()
                if path not in have and (path.split("/", 1)[0] not in OPTIONAL_GROUPS
                                         or path.split("/", 1)[0] in present_groups)]
    problems += [f"extra tensor '{path}' (shape {shape})" for path, shape in have.items() if path not in want]
    problems += [f"tensor '{path}' has shape {have[path]} but the model needs {shape}"
                 for path, shape in want.items() if path in have and have[path] != shape]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CheckpointMismatchError(
            f"the parameters in {params_label} do not fit the {config.family} model ({config.num_layers} layers, "
            f"hidden {config.hidden_size}) described by {config_label}: {problems[0]}{more}.")


def _read_source(args):
    """`(config, params, params_label, config_label)`; a source that cannot be read becomes one line naming it."""
    from rofjax.checkpoint import (
        CheckpointMismatchError,
        load_bert4keras,
        load_huggingface,
        load_model_config,
        restore_params,
    )
    from rofjax.checkpoint.run import CONFIG_FILE, PARAMS_ITEM

    source = os.path.abspath(args.checkpoint)
    if args.source != "bert4keras" and os.path.isfile(source):
        what = "config.json and the weights" if args.source == "huggingface" else "the parameters"
        raise ValueError(f"--checkpoint {args.checkpoint} is a file; give the folder that holds {what} "
                         f"({os.path.dirname(source)}?).")
    try:
        if args.source == "bert4keras":
            config, params, report = load_bert4keras(args.checkpoint, args.config, args.model,
                                                     strict=not args.lenient, return_report=True)
            print(f"bert4keras: {report.summary()}", file=sys.stderr)
            return config, params, source, os.path.abspath(args.config)
        if args.source == "huggingface":
            config, params, report = load_huggingface(args.checkpoint, strict=not args.lenient, return_report=True)
            print(f"huggingface: {report.summary()}", file=sys.stderr)
            return config, params, source, os.path.join(source, "config.json")
        config = load_model_config(args.checkpoint)
        params = restore_params(args.checkpoint)
        if "encoder" in params:                 # a training run's task model: its encoder is what converts
            heads = sorted(k for k in params if k != "encoder")
            print(f"rofjax: converting the encoder of a task model (not converted: {heads})", file=sys.stderr)
            params = params["encoder"]
        params_folder = os.path.join(source, PARAMS_ITEM)
        config_file = os.path.join(source, CONFIG_FILE)
        if not os.path.exists(config_file):     # a run's best/ or checkpoints/: the config beside them
            config_file = os.path.join(os.path.dirname(source.rstrip(os.sep)), CONFIG_FILE)
        return config, params, params_folder if os.path.isdir(params_folder) else source, config_file
    except (CheckpointMismatchError, FileNotFoundError, KeyError, ImportError):
        raise
    except Exception as error:
        from rofjax.checkpoint.run import innermost_message

        raise ValueError(f"cannot read {args.source} checkpoint {source}: {innermost_message(error)}") from error


def _write(args, params, config, folder: str) -> None:
    from rofjax.checkpoint import save_bert4keras, save_huggingface, save_params

    if args.target == "rofjax":
        save_params(folder, params, config)
    elif args.target == "huggingface":
        save_huggingface(params, config, folder, vocab_path=args.vocab, target=args.hf_target)
    else:
        save_bert4keras(params, config, folder, vocab_path=args.vocab)


def _read_back(args, config, folder: str, ids, segments):
    from rofjax.checkpoint import load_bert4keras, load_huggingface, restore_params

    if args.target == "rofjax":
        return _hidden(config, restore_params(folder), ids, segments)
    if args.target == "huggingface":
        reread_config, reread = load_huggingface(folder)
    else:
        reread_config, reread = load_bert4keras(folder, os.path.join(folder, "bert_config.json"), config.family)
    return _hidden(reread_config, reread, ids, segments)


def _move_into_place(staging: str, out: str) -> None:
    """Rename `staging` to `out`; an existing `out` is set aside first and deleted only once the rename is done."""
    if not os.path.exists(out):
        os.rename(staging, out)
        return
    old = f"{out}.old-{os.getpid()}"
    os.rename(out, old)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _is_empty_dir(path: str) -> bool:
    return os.path.isdir(path) and not os.listdir(path)


def convert(args) -> int:
    from tqdm import tqdm

    out = os.path.abspath(args.out)
    parent = os.path.dirname(out)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise NotADirectoryError(f"--out {args.out}: {parent} is a file, so no folder can be made under it.")
    if os.path.exists(out) and not _is_empty_dir(out):
        if not args.overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite to replace it.")
        if not os.path.isdir(out):
            raise FileExistsError(f"{out} exists and is not a folder; --overwrite replaces folders only.")
    if args.source == "bert4keras" and (not args.model or not args.config):
        raise ValueError("--from bert4keras needs --model and --config (bert_config.json).")
    if args.hf_target != "transformers" and args.target != "huggingface":
        raise ValueError(f"--hf-target {args.hf_target} is for --to huggingface (this converts to {args.target}).")

    steps = tqdm(total=4, desc="convert", unit="step", file=sys.stderr)
    try:
        steps.set_postfix_str(f"reading {args.source}")
        config, params, params_label, config_label = _read_source(args)
        if args.target == "huggingface":
            from rofjax.checkpoint.huggingface import check_export_target

            check_export_target(config, args.hf_target, opt_in="--hf-target junnyu", alternative="--to bert4keras")
        _check_fits(config, params, params_label, config_label)
        steps.update()
        delta, label = _write_checked(args, config, params, out, steps)
    finally:
        steps.close()
    print(f"parity: max |Δ| = {delta:.3g} on a 2×16 probe batch with padding ({label})")
    if not delta <= args.tolerance:                    # NaN too: a weight that is not finite
        why = "is not a number: the converted model computes NaN (a non-finite weight in the checkpoint?)" \
            if delta != delta else f"exceeds --tolerance {args.tolerance}"
        print(f"error: parity {delta:.3g} {why}; nothing written to {out}", file=sys.stderr)
        return 1
    print(f"wrote {args.target} checkpoint of a {config.family} model ({config.num_layers} layers, hidden "
          f"{config.hidden_size}) to {out}")
    return 0


def _write_checked(args, config, params, out: str, steps) -> tuple[float, str]:
    """Write the target beside `out`, compare it with `params` on a probe batch, and rename it to `out` only when
    the parity is within tolerance; whatever happens, no partial folder is left behind."""
    parent = os.path.dirname(out)
    created = []
    while parent and not os.path.exists(parent):
        created.append(parent)
        parent = os.path.dirname(parent)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    staging = f"{out}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        steps.set_postfix_str(f"writing {args.target}")
        _write(args, params, config, staging)
        steps.update()

        steps.set_postfix_str("checking parity")
        ids, segments = _probe_batch(config.vocab_size)
        ours = _hidden(config, params, ids, segments)
        reference, label = None, ""
        if args.source == "huggingface":
            reference = _transformers_reference(args.checkpoint, config, ids, segments)
            label = f"transformers {TRANSFORMERS_MODELS.get(config.family)}"
        if reference is None:
            reference = _read_back(args, config, staging, ids, segments)
            label = f"written {args.target} files read back"
        steps.update()
        valid = ids != 0
        delta = float(np.abs(ours[valid] - reference[valid]).max())
        steps.update()
        if delta <= args.tolerance:
            _move_into_place(staging, out)
        return delta, label
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not os.path.exists(out):
            for folder in created:
                try:
                    os.rmdir(folder)
                except OSError:
                    break


def export_command(args) -> int:
    from rofjax.export import export

    out = export(args.run_dir, args.out_dir, checkpoint=args.checkpoint, overwrite=args.overwrite)
    print(out)
    return 0


def predict_command(args) -> int:
    """JSON lines `{"text": ..., "result": ...}`, one per non-empty input line, to --output (written whole, then
    renamed into place) or stdout."""
    import json

    from rofjax.pipelines import pipeline, predict_lines

    # Checked before the model loads and every line is predicted.
    if args.input and os.path.isdir(args.input):
        raise ValueError(f"--input {args.input} is a folder; give a text or JSON-lines file.")
    if args.input and not os.path.exists(args.input):
        raise FileNotFoundError(f"--input {args.input} does not exist.")
    if args.output:
        if os.path.isdir(args.output):
            raise ValueError(f"--output {args.output} is a folder; give the path of the file to write.")
        folder = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"--output {args.output}: its folder {folder} does not exist.")
    pipe = pipeline(args.task, args.model, batch_size=args.batch_size, checkpoint=args.checkpoint)
    source = open(args.input, "rb") if args.input else getattr(sys.stdin, "buffer", sys.stdin)
    try:
        rows = predict_lines(pipe, _utf8_lines(source), text_key=args.text_key)
        if args.output is None:
            for row in rows:
                print(json.dumps(row, ensure_ascii=False), flush=True)
            return 0
        tmp = f"{args.output}.tmp-{os.getpid()}"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                count = 0
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    count += 1
            os.replace(tmp, args.output)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        print(f"{count} predictions → {args.output}", file=sys.stderr)
        return 0
    except ValueError as error:
        raise ValueError(f"{args.input or 'stdin'}: {error}") from None
    finally:
        if args.input:
            source.close()


def _utf8_lines(stream):
    for number, raw in enumerate(stream, 1):
        if isinstance(raw, str):                          # a text stdin (main() called with sys.stdin replaced)
            yield raw.rstrip("\r\n")
            continue
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as error:
            raise ValueError(f"line {number}: not UTF-8 ({error.reason} at byte {error.start} of the line).") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not ≥ 1")
    return value


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number ≥ 0")
    return value


# Subcommands that are the training programs: their flags are absl's (`rofjax finetune --help`).
PROGRAMS = {"demo": ("train.demo", "the main job: NER from raw text, trained, scored, exported and run in minutes"),
            "finetune": ("train.finetune", "fine-tune on a task (any config whose task is not mlm)"),
            "pretrain": ("train.pretrain", "masked-LM pre-training"),
            "compile": ("train.compile", "compile a config's train step for a device topology, without it"),
            "submit": ("train.predict", "write a dataset's leaderboard prediction file from a run"),
            "experiment": ("train.experiment", "run a claim-testing experiment: tables over seeds and plots")}


def run_program(name: str, argv: list[str]) -> int:
    import runpy

    module = PROGRAMS[name][0]
    saved = sys.argv
    sys.argv = [f"rofjax {name}", *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rofjax", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1].split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in PROGRAMS.items():
        commands.add_parser(name, help=f"{help_text} (flags: rofjax {name} --help)", add_help=False)
    c = commands.add_parser("convert", help="convert checkpoints between bert4keras, Hugging Face and rofjax")
    c.add_argument("--from", dest="source", choices=SOURCES, required=True)
    c.add_argument("--to", dest="target", choices=TARGETS, default="rofjax")
    c.add_argument("--model", choices=("bert", "roberta", "roformer", "roformer_v2", "gau_alpha"),
                   help="model family of a bert4keras checkpoint (roberta: a BERT checkpoint, e.g. RoBERTa-wwm-ext)")
    c.add_argument("--config", help="bert_config.json of a bert4keras checkpoint")
    c.add_argument("--checkpoint", required=True,
                   help="bert_model.ckpt prefix, Hugging Face folder, or rofjax checkpoint folder")
    c.add_argument("--out", required=True, help="output folder")
    c.add_argument("--vocab", help="vocab.txt to copy beside an exported checkpoint")
    c.add_argument("--hf-target", choices=("transformers", "junnyu"), default="transformers",
                   help="library a --to huggingface export is for: stock transformers (bert, roformer) or JunnYu's "
                        "roformer / gau_alpha packages (needed for roformer_v2 and gau_alpha)")
    c.add_argument("--lenient", action="store_true",
                   help="report unused source tensors instead of failing on them")
    c.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out folder (all of it), once the new checkpoint has passed parity")
    c.add_argument("--tolerance", type=_tolerance, default=1e-4, help="largest acceptable parity |Δ|")
    c.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    c.set_defaults(handler=convert)

    e = commands.add_parser("export", help="write a run's self-contained model folder (weights, config, vocabulary, "
                                           "labels, model card)")
    e.add_argument("run_dir", help="the training run's --workdir")
    e.add_argument("out_dir", help="the model folder to write")
    e.add_argument("--checkpoint", help="parameters other than the run's best/ (else latest checkpoint)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    e.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    e.set_defaults(handler=export_command)

    p = commands.add_parser("predict", help="run a model on raw text: lines or JSON lines in, JSON lines out")
    p.add_argument("--model", required=True, help="an exported model folder, a run folder or a hub id")
    p.add_argument("--task", required=True, choices=("ner", "classification", "relations", "events"))
    p.add_argument("--input", help="text file, one text (or JSON object) per line (default: stdin)")
    p.add_argument("--output", help="JSON lines file to write (default: stdout)")
    p.add_argument("--text-key", default="text", help="the text field of JSON input lines")
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--checkpoint", help="with a run folder: parameters other than its best/")
    p.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    p.set_defaults(handler=predict_command)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in PROGRAMS:
        return run_program(argv[0], argv[1:])
    from rofjax.checkpoint.mirror import MirrorError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (OSError, KeyError, ValueError, ImportError, MirrorError) as error:
        if getattr(args, "traceback", False):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"rofjax {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
