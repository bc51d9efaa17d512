"""`rofjax` command line: `rofjax convert ...`.

    rofjax convert --from bert4keras --model roformer_v2 --config bert_config.json --checkpoint bert_model.ckpt \
        --out DIR                                   # → DIR/params (orbax) + DIR/model_config.json
    rofjax convert --from huggingface --checkpoint HF_FOLDER --out DIR
    rofjax convert --from rofjax --checkpoint DIR --to huggingface --out HF_DIR     (or --to bert4keras)

Every conversion ends with a parity line: the largest |Δ| between hidden states of the converted model and of a
reference on a fixed probe batch with padding (transformers' RoFormerModel when converting a Hugging Face RoFormer
and it is installed; otherwise the written files read back from disk).
"""

from __future__ import annotations

import argparse
import os
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


def _transformers_reference(folder, config, ids, segments):
    if config.family != "roformer":
        return None
    try:
        import torch
        import transformers
    except ImportError:
        return None
    model = transformers.RoFormerModel.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(segments),
                    attention_mask=torch.tensor((ids != 0).astype(np.int64)))
    return out.last_hidden_state.numpy().astype(np.float64)


def convert(args) -> int:
    from tqdm import tqdm

    from rofjax.checkpoint import (
        load_bert4keras,
        load_huggingface,
        load_model_config,
        restore_params,
        save_bert4keras,
        save_huggingface,
        save_params,
    )

    steps = tqdm(total=4, desc="convert", unit="step", file=sys.stderr)
    steps.set_postfix_str(f"reading {args.source}")
    if args.source == "bert4keras":
        if not args.model or not args.config:
            raise SystemExit("rofjax convert --from bert4keras needs --model and --config (bert_config.json).")
        config, params, report = load_bert4keras(args.checkpoint, args.config, args.model, strict=not args.lenient,
                                                 return_report=True)
        print(f"bert4keras: {report.summary()}", file=sys.stderr)
    elif args.source == "huggingface":
        config, params, report = load_huggingface(args.checkpoint, strict=not args.lenient, return_report=True)
        print(f"huggingface: {report.summary()}", file=sys.stderr)
    else:
        config = load_model_config(args.checkpoint)
        params = restore_params(args.checkpoint)
    steps.update()

    steps.set_postfix_str(f"writing {args.target}")
    if args.target == "rofjax":
        save_params(args.out, params, config, overwrite=args.overwrite)
    elif args.target == "huggingface":
        save_huggingface(params, config, args.out, vocab_path=args.vocab)
    else:
        save_bert4keras(params, config, args.out, vocab_path=args.vocab)
    steps.update()

    steps.set_postfix_str("checking parity")
    ids, segments = _probe_batch(config.vocab_size)
    ours = _hidden(config, params, ids, segments)
    reference, label = None, ""
    if args.source == "huggingface":
        reference = _transformers_reference(args.checkpoint, config, ids, segments)
        label = "transformers RoFormerModel"
    if reference is None:
        if args.target == "rofjax":
            reference = _hidden(config, restore_params(args.out), ids, segments)
        elif args.target == "huggingface":
            reread_config, reread = load_huggingface(args.out)
            reference = _hidden(reread_config, reread, ids, segments)
        else:
            reread_config, reread = load_bert4keras(args.out, os.path.join(args.out, "bert_config.json"),
                                                    config.family)
            reference = _hidden(reread_config, reread, ids, segments)
        label = f"written {args.target} files read back"
    steps.update()
    valid = ids != 0
    delta = float(np.abs(ours[valid] - reference[valid]).max())
    steps.update()
    steps.close()
    print(f"wrote {args.target} checkpoint of a {config.family} model ({config.num_layers} layers, hidden "
          f"{config.hidden_size}) to {os.path.abspath(args.out)}")
    print(f"parity: max |Δ| = {delta:.3g} on a 2×16 probe batch with padding ({label})")
    if delta > args.tolerance:
        print(f"error: parity {delta:.3g} exceeds --tolerance {args.tolerance}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rofjax", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("convert", help="convert checkpoints between bert4keras, Hugging Face and rofjax")
    c.add_argument("--from", dest="source", choices=SOURCES, required=True)
    c.add_argument("--to", dest="target", choices=TARGETS, default="rofjax")
    c.add_argument("--model", choices=("roformer", "roformer_v2", "gau_alpha"),
                   help="model family of a bert4keras checkpoint")
    c.add_argument("--config", help="bert_config.json of a bert4keras checkpoint")
    c.add_argument("--checkpoint", required=True,
                   help="bert_model.ckpt prefix, Hugging Face folder, or rofjax checkpoint folder")
    c.add_argument("--out", required=True, help="output folder")
    c.add_argument("--vocab", help="vocab.txt to copy beside an exported checkpoint")
    c.add_argument("--lenient", action="store_true",
                   help="report unused source tensors instead of failing on them")
    c.add_argument("--overwrite", action="store_true", help="replace an existing rofjax checkpoint in --out")
    c.add_argument("--tolerance", type=float, default=1e-4, help="largest acceptable parity |Δ|")
    c.set_defaults(handler=convert)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (FileNotFoundError, FileExistsError, KeyError, ValueError, ImportError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"rofjax {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
