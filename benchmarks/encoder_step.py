"""Training-step throughput: rofjax vs Hugging Face PyTorch RoFormer on the same model, measured in one run.

A step is forward, backward and an AdamW update of a RoFormer masked-LM (L=4, H=256, A=4, FFN=1024, vocab 8000),
batch 16 × 128 tokens, fp32, dropout 0.1 active, 15% of the tokens labelled. Both frameworks use the same number
of threads. Rounds alternate between the two so that a noisy neighbour slows both alike; the medians are compared.

    python benchmarks/encoder_step.py                 # defaults above
    python benchmarks/encoder_step.py --rounds 3 --steps 3 --variants baseline    # quick

Variants of the rofjax step (each computes the same loss and the same update):
  all_logits     vocabulary logits for every token, as the PyTorch model computes them
  masked_logits  the MLM head and vocabulary projection only at the labelled positions
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

THREADS_DEFAULT = os.cpu_count() or 1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round and framework")
    parser.add_argument("--threads", type=int, default=THREADS_DEFAULT)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--variants", default="all_logits,masked_logits")
    parser.add_argument("--json", help="also write the results to this file")
    return parser.parse_args(argv)


def configure_threads(threads: int):
    # Set before jax/torch are imported: XLA's CPU thread pool and torch's intra-op pool get the same size.
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={threads}"
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def make_batch(batch, length, vocab, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(batch, length))
    lengths = rng.integers(length // 2, length + 1, size=batch)
    ids[np.arange(length)[None, :] >= lengths[:, None]] = 0
    labelled = (rng.random((batch, length)) < 0.15) & (ids != 0)
    labels = np.where(labelled, ids, 0)
    return ids, np.zeros_like(ids), labels


def torch_step_fn(ids, segments, labels, threads):
    import torch
    import transformers

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = transformers.RoFormerConfig(vocab_size=8000, hidden_size=256, num_hidden_layers=4,
                                         num_attention_heads=4, intermediate_size=1024, max_position_embeddings=512)
    model = transformers.RoFormerForMaskedLM(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    inputs = dict(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(segments),
                  attention_mask=torch.tensor((ids != 0).astype("int64")),
                  labels=torch.tensor(labels).masked_fill(torch.tensor(labels) == 0, -100))

    def step():
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    return step


def jax_step_fn(ids, segments, labels, variant):
    import jax
    import jax.numpy as jnp
    import optax
    from flax import linen as nn

    from rofjax.losses import masked_lm_crossentropy
    from rofjax.models import Encoder, family_config

    config = family_config("roformer", vocab_size=8000, hidden_size=256, num_layers=4, num_heads=4,
                           intermediate_size=1024)
    model = Encoder(config)
    if variant not in ("all_logits", "masked_logits"):
        raise SystemExit(f"unknown variant {variant!r}; expected all_logits or masked_logits")
    key = jax.random.key(0)
    params = nn.unbox(model.init(key, ids, method=Encoder.masked_lm))["params"]
    optimizer = optax.adamw(1e-4, weight_decay=0.01)
    opt_state = optimizer.init(params)
    ids, segments, labels = map(jnp.asarray, (ids, segments, labels))
    flat = weights = None
    if variant == "masked_logits":
        # The labelled positions, padded to a fixed count (as a pipeline would) with zero-weight fillers.
        count = int((labels != 0).sum())
        flat = jnp.flatnonzero(labels.reshape(-1) != 0, size=count + 8, fill_value=0)
        weights = (jnp.arange(count + 8) < count).astype(jnp.float32)[None]

    def loss_fn(p, rng):
        hidden = model.apply({"params": p}, ids, segments, deterministic=False, rngs={"dropout": rng})
        if flat is None:
            logits = model.apply({"params": p}, hidden, deterministic=False, rngs={"dropout": rng},
                                 method=Encoder.mlm_logits)
            return masked_lm_crossentropy(labels, logits)
        picked = hidden.reshape(-1, hidden.shape[-1])[flat][None]
        picked_labels = labels.reshape(-1)[flat][None]
        logits = model.apply({"params": p}, picked, deterministic=False, rngs={"dropout": rng},
                             method=Encoder.mlm_logits)
        return masked_lm_crossentropy(picked_labels, logits, weights)

    def train_step(p, state, rng):
        rng, step_rng = jax.random.split(rng)
        loss, grads = jax.value_and_grad(loss_fn)(p, step_rng)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, rng, loss

    train_step = jax.jit(train_step, donate_argnums=(0, 1))
    carry = {"params": params, "opt": opt_state, "rng": key}

    def step():
        carry["params"], carry["opt"], carry["rng"], loss = train_step(carry["params"], carry["opt"], carry["rng"])
        return float(loss)

    return step


def timed(step, steps):
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main(argv=None):
    args = parse_args(argv)
    configure_threads(args.threads)
    import jax

    ids, segments, labels = make_batch(args.batch, args.length, 8000)
    tokens = args.batch * args.length
    variants = [v for v in args.variants.split(",") if v]
    runners = {"pytorch": torch_step_fn(ids, segments, labels, args.threads)}
    for variant in variants:
        runners[f"rofjax[{variant}]"] = jax_step_fn(ids, segments, labels, variant)
    first_losses = {}
    for name, step in runners.items():           # compile / warm up
        first_losses[name] = step()
        step()
        print(f"warmed up {name}", file=sys.stderr)
    # Same initialisation and dropout stream: the rofjax variants must start from the same loss.
    jax_losses = [v for k, v in first_losses.items() if k.startswith("rofjax")]
    print("first-step loss: " + ", ".join(f"{k} {v:.5f}" for k, v in first_losses.items()))
    if max(jax_losses) - min(jax_losses) > 1e-3:
        raise SystemExit("rofjax variants disagree on the loss; the comparison would be meaningless")
    times = {name: [] for name in runners}
    for round_index in range(args.rounds):
        for name, step in runners.items():
            times[name].append(timed(step, args.steps))
        print(f"round {round_index + 1}/{args.rounds}: " +
              ", ".join(f"{n} {t[-1] * 1e3:.0f} ms" for n, t in times.items()), file=sys.stderr)
    baseline = statistics.median(times["pytorch"])
    print(f"threads={args.threads} batch={args.batch} length={args.length} jax={jax.__version__} "
          f"devices={jax.devices()[0].platform}")
    results = {}
    for name, samples in times.items():
        median = statistics.median(samples)
        results[name] = {"step_ms": median * 1e3, "tokens_per_s": tokens / median, "ratio": baseline / median}
        print(f"{name:24s} {median * 1e3:8.1f} ms/step {tokens / median:10.0f} tokens/s   "
              f"ratio vs pytorch {baseline / median:5.2f}x")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
