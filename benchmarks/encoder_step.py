"""Training-step throughput: rofjax vs Hugging Face PyTorch RoFormer on the same model, measured in one run.

A step is forward, backward and an AdamW update of a RoFormer masked-LM with dropout 0.1 (hidden and attention)
active and 15% of the tokens labelled. Rounds alternate between the runners so that a noisy neighbour slows all
alike; the medians are compared against the first baseline.

    python benchmarks/encoder_step.py                  # CPU: L=4, H=256, A=4, FFN 1024, vocab 8000, 16 × 128, fp32
    python benchmarks/encoder_step.py --device gpu     # GPU: RoFormer base, vocab 12000, 32 × 512, bf16 compute
    python benchmarks/encoder_step.py --device gpu --sections step,trainer,long,compile --json out.json

Sections:
  step     rofjax variants vs PyTorch eager (and `torch.compile` on GPU); ms/step, tokens/s, MFU, peak memory
  trainer  RoFormerV2 base through the real `Trainer` and `MaskedLMTask` (packed-document masks, gathered head), one
           row per --trainer-variants entry (scan|unrolled, xla|cudnn, fused_dropout, no_attn_dropout, no_dropout
           (every dropout rate 0: what the masks cost), rbg: train.dropout_prng=unsafe_rbg, docsN: at most N packed
           documents per row (N=1: unpacked rows, plain padding lengths), triton: XLA's Triton GEMM fusions back on
           (rofjax turns them off on a GPU), cmdbuf: every command-buffer kind XLA uses by default, cublaslt:
           xla_gpu_enable_cublaslt, nomerge: no merging of the q/k/v matmuls; the last four apply to step
           variants too)
  long     GAU-α vs RoFormerV2 base at 512, 2048 and 8192 tokens per sequence (FLASH chunks of 256 at 8192)
  compile  compile time of 24 vs 2 scanned layers
  hlo      on any machine (the `gpu-aot` extra): each step variant compiled for --compile-for (a GPU topology as
           `train.compile --topology` takes it), its optimised HLO written to --dump-hlo for hlo_traffic.py

MFU is model FLOPs (matmuls of forward + backward = 3 × forward, counted by `encoder_forward_flops` plus the
vocabulary projection) over the device's peak dense bf16 FLOP/s. rofjax's peak memory is what XLA's compiled
step reserves (arguments + outputs + temporaries − donated aliases); PyTorch's is `max_memory_allocated`.

On the GPU every JAX run (each step variant, each Trainer variant, the long and compile sections) is a child process
of this one, and PyTorch another: a run that aborts the process (XLA's cuDNN attention did, at a `CHECK` in
`cuda_dnn.cc`, jax 0.11.2) loses its own row only. `--no-isolate` runs them all in one process.

Variants of the rofjax step (names joined by `+`; each computes the same loss):
  all_logits / masked_logits  vocabulary logits for every token, or the MLM head only at the labelled positions
  xla / cudnn                 attention kernel (`attention_implementation`)
  gather / one_hot            embedding-gradient method (`embedding_lookup`)
  fused_dropout               attention dropout inside the cuDNN kernel; no_attn_dropout: attention dropout 0
  scan / unrolled             layers under `nn.scan` or not (default unrolled: scanned layers cost 1.5× the step
                              on an H100); rbg: the `unsafe_rbg` PRNG for dropout masks
  triton                      XLA's Triton GEMM fusions on (rofjax's GPU default has them off); cmdbuf: XLA's
                              default command buffers, cuDNN included
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

THREADS_DEFAULT = os.cpu_count() or 1
PEAK_BF16 = {"NVIDIA H100 80GB HBM3": 989e12, "NVIDIA H100": 989e12, "NVIDIA H200": 989e12,
             "NVIDIA A100-SXM4-80GB": 312e12, "NVIDIA A100-SXM4-40GB": 312e12}
GPU_VARIANTS = ("all_logits+xla+gather,all_logits+xla+one_hot,masked_logits+xla+one_hot,"
                "masked_logits+cudnn+one_hot+no_attn_dropout,masked_logits+cudnn+one_hot+fused_dropout")
TRAINER_GPU_VARIANTS = "unrolled+fused_dropout+docs1,unrolled+no_dropout+docs1,unrolled+fused_dropout,scan"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--sections", default=None, help="comma list of step,trainer,long,compile,hlo")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round and runner")
    parser.add_argument("--threads", type=int, default=THREADS_DEFAULT)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--length", type=int, default=None)
    parser.add_argument("--variants", default=None)
    parser.add_argument("--no-torch-compile", action="store_true")
    parser.add_argument("--scan", action="store_true",
                        help="scan the layers of the step and long sections unless a variant says unrolled")
    parser.add_argument("--long-lengths", default="512,2048,8192", help="sequence lengths of the long section")
    parser.add_argument("--long-tokens", type=int, default=16384, help="tokens per step in the long section")
    parser.add_argument("--long-families", default="roformer_v2,gau_alpha")
    parser.add_argument("--gau-chunk", type=int, default=256,
                        help="FLASH chunk size of GAU-α in the long section from 2048 tokens on (0: none)")
    parser.add_argument("--compile-only", action="store_true",
                        help="long section: report the compiled step's memory without running it")
    parser.add_argument("--trainer-variants", default=None,
                        help="comma list of Trainer runs, parts joined by +: scan|unrolled, xla|cudnn, "
                             "fused_dropout, no_attn_dropout, rbg (the unsafe_rbg dropout PRNG)")
    parser.add_argument("--profile", help="write a device trace of one rofjax run to this folder")
    parser.add_argument("--profile-variant", default="trainer:scan",
                        help="the run traced: a step variant, or trainer:NAME for a Trainer run")
    parser.add_argument("--dump-hlo", help="write XLA's optimised HLO of the --profile-variant run's step here "
                        "(isolated runs only); the hlo section writes every variant's here")
    parser.add_argument("--compile-for", default="h200",
                        help="hlo section: the GPU topology to compile for without one (h100, h200, ...)")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="run every JAX run in a child process, so that one that aborts the process loses only "
                             "its own row (default on GPU)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    gpu = args.device == "gpu"
    args.sections = args.sections or ("step,trainer,long,compile" if gpu else "step")
    args.batch = args.batch or (32 if gpu else 16)
    args.length = args.length or (512 if gpu else 128)
    args.variants = args.variants or (GPU_VARIANTS if gpu else "all_logits,masked_logits")
    args.trainer_variants = args.trainer_variants or (TRAINER_GPU_VARIANTS if gpu else "scan")
    args.isolate = gpu if args.isolate is None else args.isolate
    if args.sections == "hlo":
        args.isolate = False         # compiles only, in this process, on a CPU host
    args.shape = (dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, vocab_size=12000)
                  if gpu else dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024,
                                   vocab_size=8000))
    args.dtype = "bfloat16" if gpu else "float32"
    return args


def configure(args):
    # Set before jax/torch are imported.
    if args.sections == "hlo":
        os.environ["JAX_PLATFORMS"] = "cpu"      # the GPU is described, not used
    elif args.device == "cpu":
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=true".strip()
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
        os.environ["JAX_PLATFORMS"] = "cpu"
    else:
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")   # PyTorch shares the GPU


def make_batch(batch, length, vocab, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(batch, length))
    lengths = rng.integers(length // 2, length + 1, size=batch)
    ids[np.arange(length)[None, :] >= lengths[:, None]] = 0
    labelled = (rng.random((batch, length)) < 0.15) & (ids != 0)
    labels = np.where(labelled, ids, 0)
    return ids, np.zeros_like(ids), labels


def model_flops(shape, batch, length, predictions, transform_head=True):
    from rofjax.models import family_config
    from rofjax.models.flops import encoder_forward_flops

    cfg = family_config("roformer", **shape)
    E, V = cfg.hidden_size, cfg.vocab_size
    head = predictions * (2 * E * V + (2 * E * E if transform_head else 0))
    return 3 * (batch * encoder_forward_flops(cfg, length) + head)


# Runners -------------------------------------------------------------------------------------------------------
def torch_runner(args, ids, segments, labels, compiled):
    import torch
    import transformers

    gpu = args.device == "gpu"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = "cuda" if gpu else "cpu"
    config = transformers.RoFormerConfig(**{"vocab_size": args.shape["vocab_size"],
                                            "hidden_size": args.shape["hidden_size"],
                                            "num_hidden_layers": args.shape["num_layers"],
                                            "num_attention_heads": args.shape["num_heads"],
                                            "intermediate_size": args.shape["intermediate_size"]},
                                         max_position_embeddings=max(512, args.length))
    model = transformers.RoFormerForMaskedLM(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    t = lambda a: torch.tensor(a).to(device)
    inputs = dict(input_ids=t(ids), token_type_ids=t(segments), attention_mask=t((ids != 0).astype("int64")),
                  labels=t(labels).masked_fill(t(labels) == 0, -100))

    def loss_fn():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=gpu):
            return model(**inputs).loss

    forward = torch.compile(loss_fn) if compiled else loss_fn

    def step():
        loss = forward()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    def peak_bytes():
        return torch.cuda.max_memory_allocated() if gpu else None

    if gpu:
        torch.cuda.reset_peak_memory_stats()
    return step, peak_bytes


def variant_config(args, variant):
    from rofjax.models import family_config

    parts = set(variant.split("+"))
    known = {"all_logits", "masked_logits", "xla", "cudnn", "gather", "one_hot", "fused_dropout", "no_attn_dropout",
             "scan", "unrolled", "rbg", "auto", "triton", "cmdbuf", "cublaslt", "nomerge"}
    if parts - known:
        raise SystemExit(f"unknown variant part(s) {sorted(parts - known)} in {variant!r}; known: {sorted(known)}")
    values = dict(args.shape, dtype=args.dtype,
                  scan_layers="scan" in parts or (args.scan and "unrolled" not in parts),
                  attention_implementation="cudnn" if "cudnn" in parts else "xla" if "xla" in parts else "auto",
                  embedding_lookup="one_hot" if "one_hot" in parts else "gather" if "gather" in parts else "auto",
                  fused_attention_dropout="fused_dropout" in parts,
                  max_position_embeddings=max(512, args.length))
    if "no_attn_dropout" in parts:
        values["attention_dropout_rate"] = 0.0
    return family_config("roformer", **values), parts


def compiled_bytes(compiled):
    try:
        m = compiled.memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                   - m.alias_size_in_bytes)
    except Exception:   # noqa: BLE001 (not every backend reports it)
        return None


def masked_lm_step(model, config, parts, optimizer, per_row):
    """The rofjax masked-LM training step of a variant: `step(params, opt_state, rng, ids, segments, labels)`, the
    MLM head (`masked_logits`) at `per_row` positions a row (the labelled ones first, then weight-0 padding)."""
    import jax
    import jax.numpy as jnp
    import optax

    from rofjax.losses import masked_lm_crossentropy
    from rofjax.models import Encoder
    from rofjax.nn.embedding import gather_positions

    def loss_fn(p, rng, ids, segments, labels):
        rngs = {"dropout": rng}
        hidden = model.apply({"params": p}, ids, segments, deterministic=False, rngs=rngs)
        if "masked_logits" not in parts:
            logits = model.apply({"params": p}, hidden, deterministic=False, rngs=rngs, method=Encoder.mlm_logits)
            return masked_lm_crossentropy(labels, logits)
        # The labelled positions per example, padded to a fixed count (as the MLM pipeline does) with weight 0.
        order = jnp.argsort(labels == 0, axis=1, stable=True)[:, :per_row]
        picked_weights = (jnp.take_along_axis(labels, order, 1) != 0).astype(jnp.float32)
        picked = gather_positions(hidden, order, method=config.embedding_lookup)
        logits = model.apply({"params": p}, picked, deterministic=False, rngs=rngs, method=Encoder.mlm_logits)
        return masked_lm_crossentropy(jnp.take_along_axis(labels, order, 1), logits, picked_weights)

    def train_step(p, state, rng, ids, segments, labels):
        rng, step_rng = jax.random.split(rng)
        loss, grads = jax.value_and_grad(loss_fn)(p, step_rng, ids, segments, labels)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, rng, loss

    return train_step


def jax_runner(args, ids, segments, labels, variant):
    import functools

    import jax
    import jax.numpy as jnp
    import optax
    from flax import linen as nn

    from rofjax.models import Encoder
    from rofjax.training.state import default_compiler_options

    config, parts = variant_config(args, variant)
    model = Encoder(config)
    key = jax.random.key(0, impl="unsafe_rbg" if "rbg" in parts else None)
    params = nn.unbox(jax.jit(lambda key: model.init(key, ids, method=Encoder.masked_lm))(jax.random.key(0)))["params"]
    optimizer = optax.adamw(1e-4, weight_decay=0.01)
    opt_state = jax.jit(optimizer.init)(params)
    ids, segments, labels = map(jnp.asarray, (ids, segments, labels))
    # The batch is part of the compiled step (constants), as it always was here: only the state moves.
    per_row = int((labels != 0).sum(1).max())
    train_step = functools.partial(masked_lm_step(model, config, parts, optimizer, per_row), ids=ids,
                                   segments=segments, labels=labels)
    options = {**default_compiler_options(jax.default_backend(), config), **trainer_compiler_options(variant)}
    compiled = jax.jit(train_step, donate_argnums=(0, 1),
                       compiler_options=options or None).lower(params, opt_state, key).compile()
    reserved = compiled_bytes(compiled)
    carry = {"params": params, "opt": opt_state, "rng": key}

    def step():
        carry["params"], carry["opt"], carry["rng"], loss = compiled(carry["params"], carry["opt"], carry["rng"])
        return float(loss)

    return step, lambda: reserved


def section_hlo(args, results):
    """Each step variant compiled for a GPU topology that is not attached (`--compile-for h200`, as
    `train.compile --topology` takes it), its optimised HLO written to `--dump-hlo` for `hlo_traffic.py`."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import linen as nn
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from rofjax.models import Encoder
    from rofjax.parallel.topology import topology_devices
    from rofjax.training.state import default_compiler_options

    if not args.dump_hlo:
        raise SystemExit("--sections hlo writes the compiled steps to --dump-hlo DIR")
    os.makedirs(args.dump_hlo, exist_ok=True)
    devices = topology_devices(args.compile_for)
    mesh = Mesh(np.array(devices[:1]), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    shaped = lambda tree: jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), tree)
    ids, _, labels = make_batch(args.batch, args.length, args.shape["vocab_size"])
    out = results.setdefault("hlo", {})
    for variant in args.variants.split(","):
        config, parts = variant_config(args, variant)
        model = Encoder(config)
        optimizer = optax.adamw(1e-4, weight_decay=0.01)
        params = nn.unbox(jax.eval_shape(lambda key, model=model: model.init(key, jnp.asarray(ids),
                                                                             method=Encoder.masked_lm),
                                         jax.random.key(0)))["params"]
        opt_state = jax.eval_shape(optimizer.init, params)
        key = jax.random.key(0, impl="unsafe_rbg" if "rbg" in parts else None)
        batch = jax.ShapeDtypeStruct(ids.shape, jnp.int32, sharding=replicated)
        # Labelled positions per row, as the timed step sees them: the batch's own maximum.
        step = masked_lm_step(model, config, parts, optimizer, int((labels != 0).sum(1).max()))
        options = {**default_compiler_options("gpu", config), **trainer_compiler_options(variant)}
        with jax.set_mesh(mesh):     # the `auto` settings read the platform from here
            compiled = jax.jit(step, donate_argnums=(0, 1), compiler_options=options).trace(
                shaped(params), shaped(opt_state), jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=replicated),
                batch, batch, batch).lower(lowering_platforms=("cuda",)).compile()
        path = os.path.join(args.dump_hlo, f"step-{variant}.hlo.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(compiled.as_text())
        out[variant] = {"hlo": path, "reserved_bytes": compiled_bytes(compiled)}
        print(f"== hlo {variant} for {devices[0].device_kind}: {path}, "
              f"{(compiled_bytes(compiled) or 0) / 2**30:.2f} GiB reserved", flush=True)
    results.update(device=devices[0].device_kind, jax=jax.__version__)


def timed(step, steps):
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def peak_flops(args, device_kind):
    return PEAK_BF16.get(device_kind) if args.device == "gpu" else None


def gib(n):
    return None if n is None else n / 2**30


def measure(runners, args):
    """Warm each runner up, then time them in alternating rounds; (first losses, per-runner step times)."""
    first_losses = {}
    for name, step in list(runners.items()):
        start = time.perf_counter()
        first_losses[name] = step()
        step()
        print(f"warmed up {name} in {time.perf_counter() - start:.1f} s (first loss {first_losses[name]:.4f})",
              file=sys.stderr, flush=True)
    times = {name: [] for name in runners}
    for round_index in range(args.rounds):
        for name, step in runners.items():
            times[name].append(timed(step, args.steps))
        print(f"round {round_index + 1}/{args.rounds}: " +
              ", ".join(f"{n} {t[-1] * 1e3:.1f} ms" for n, t in times.items()), file=sys.stderr, flush=True)
    return first_losses, times


def torch_baselines(args, ids, segments, labels):
    runners, memory = {}, {}
    runners["pytorch"], memory["pytorch"] = torch_runner(args, ids, segments, labels, compiled=False)
    if args.device == "gpu" and not args.no_torch_compile:
        runners["pytorch[compile]"], memory["pytorch[compile]"] = torch_runner(args, ids, segments, labels, True)
    first_losses, times = measure(runners, args)
    return {name: {"times": times[name], "first_loss": first_losses[name], "peak_bytes": memory[name]()}
            for name in runners}


def section_torch(args, results):
    """PyTorch alone (the child process of the GPU step section)."""
    ids, segments, labels = make_batch(args.batch, args.length, args.shape["vocab_size"])
    results["torch"] = torch_baselines(args, ids, segments, labels)


def child_command(args, section, *extra):
    """This script, for one section, with this run's shape and timing options; results go to --json."""
    command = [sys.executable, os.path.abspath(__file__), "--device", args.device, "--sections", section,
               "--rounds", str(args.rounds), "--steps", str(args.steps), "--batch", str(args.batch),
               "--length", str(args.length), "--threads", str(args.threads), "--long-lengths", args.long_lengths,
               "--long-tokens", str(args.long_tokens), "--long-families", args.long_families,
               "--gau-chunk", str(args.gau_chunk), "--no-isolate", *extra]
    if args.compile_only:
        command.append("--compile-only")
    if args.no_torch_compile:
        command.append("--no-torch-compile")
    if args.scan:
        command.append("--scan")
    return command


def run_child(command, env=None):
    """Run `command` (which writes --json at the end), echoing its output; (results, None) or (None, why it died)."""
    import collections
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "child.json")
        tail = collections.deque(maxlen=40)
        with subprocess.Popen([*command, "--json", out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, bufsize=1, env=env) as child:
            for line in child.stdout:
                if not line.startswith("    @"):          # the frames of an abort's stack trace
                    sys.stderr.write(line)
                tail.append(line.rstrip())
        if child.returncode == 0 and os.path.exists(out):
            with open(out, encoding="utf-8") as f:
                return json.load(f), None
        cause = next((line for line in tail if "Check failed" in line or "Error" in line), tail[-1] if tail else "")
        return None, f"exit {child.returncode}: {cause.strip()[:300]}"


def torch_in_child(args):
    # On the GPU the PyTorch baselines run in their own process, before JAX starts: with PyTorch's CUDA context in
    # the same process, XLA's cuDNN attention aborted at its first execution on an H200 (jax 0.11.2, torch 2.11).
    results, why = run_child(child_command(args, "torch"))
    if results is None:
        raise RuntimeError(f"the PyTorch baselines failed ({why})")
    return results["torch"]


def section_variant(args, results):
    """The rofjax step variants of --variants, warmed up and timed in this process (a child of the step section)."""
    ids, segments, labels = make_batch(args.batch, args.length, args.shape["vocab_size"])
    runners, memory = {}, {}
    for variant in [v for v in args.variants.split(",") if v]:
        runners[f"rofjax[{variant}]"], memory[f"rofjax[{variant}]"] = jax_runner(args, ids, segments, labels, variant)
    first_losses, times = measure(runners, args)
    results["variants"] = {name: {"times": times[name], "first_loss": first_losses[name],
                                  "peak_bytes": memory[name]()} for name in runners}
    trace_if_asked(args, runners)


def trace_if_asked(args, runners):
    """Write a device trace of three steps of the runner --profile-variant names, if this process has it."""
    import jax

    wanted = args.profile_variant if args.profile_variant.startswith("trainer:") else f"rofjax[{args.profile_variant}]"
    if not args.profile or wanted not in runners:
        return
    print(f"tracing {wanted} into {args.profile}", file=sys.stderr, flush=True)
    jax.profiler.start_trace(args.profile, create_perfetto_trace=True)
    for _ in range(3):
        runners[wanted]()
    jax.profiler.stop_trace()


def section_step(args, results):
    ids, segments, labels = make_batch(args.batch, args.length, args.shape["vocab_size"])
    tokens = args.batch * args.length
    measured = torch_in_child(args) if args.device == "gpu" or args.isolate else None
    runners, memory, times, first_losses = {}, {}, {}, {}
    variants = [v for v in args.variants.split(",") if v]
    if args.isolate:
        for variant in variants:
            name = f"rofjax[{variant}]"
            extra = ["--variants", variant, "--profile-variant", args.profile_variant]
            child, why = run_child(child_command(args, "variant", *extra,
                                                 *(["--profile", args.profile] if args.profile else [])))
            if child is not None and "variants" not in child:
                why = child.get("failures", {}).get("variant", "no result")
                child = None
            if child is None:
                print(f"FAILED {name}: {why}", flush=True)
                results.setdefault("failures", {})[name] = why
                continue
            measured = {**(measured or {}), **child["variants"]}
            results.update(device=child["device"], jax=child["jax"])
    else:
        for variant in variants:
            name = f"rofjax[{variant}]"
            try:
                runners[name], memory[name] = jax_runner(args, ids, segments, labels, variant)
            except Exception as e:  # noqa: BLE001 (report and go on: one failing variant must not hide the rest)
                print(f"FAILED {name}: {type(e).__name__}: {str(e)[:400]}", flush=True)
                results.setdefault("failures", {})[name] = f"{type(e).__name__}: {str(e)[:400]}"
        if measured is None:      # CPU: PyTorch in the same rounds, so a noisy neighbour slows both alike
            runners = {"pytorch": torch_runner(args, ids, segments, labels, compiled=False)[0], **runners}
        first_losses, times = measure(runners, args)
        trace_if_asked(args, runners)
    for name, row in (measured or {}).items():
        times[name], first_losses[name] = row["times"], row["first_loss"]
        memory[name] = lambda row=row: row["peak_bytes"]
    memory.setdefault("pytorch", lambda: None)
    baselines = [b for b in ("pytorch", "pytorch[compile]") if b in times]
    peak = peak_flops(args, results.get("device"))
    flops = model_flops(args.shape, args.batch, args.length, args.batch * args.length)
    print(f"\n== step: RoFormer {args.shape} batch {args.batch}×{args.length} {args.dtype} dropout 0.1, "
          f"jax {results.get('jax')} on {results.get('device')}")
    out = {}
    medians = {n: statistics.median(t) for n, t in times.items()}
    for name in sorted(medians, key=lambda n: (not n.startswith("pytorch"), n)):
        median = medians[name]
        row = {"step_ms": median * 1e3, "tokens_per_s": tokens / median,
               "model_tflops": flops / median / 1e12, "mfu": flops / median / peak if peak else None,
               "peak_gib": gib(memory[name]()), "first_loss": first_losses[name]}
        for base in baselines:
            row[f"ratio_vs_{base}"] = medians[base] / median
        out[name] = row
        ratios = " ".join(f"{row[f'ratio_vs_{b}']:5.2f}x vs {b}" for b in baselines)
        mfu = f"MFU {row['mfu']:.1%}" if row["mfu"] is not None else ""
        mem = f"{row['peak_gib']:.1f} GiB" if row["peak_gib"] is not None else ""
        print(f"{name:58s} {median * 1e3:8.1f} ms {tokens / median:9.0f} tok/s {mfu:10s} {mem:9s} {ratios}")
    print(f"(MFU counts the vocabulary projection for every token, {flops / 1e12:.2f} TFLOP per step, for every "
          f"row, so the masked-logits rows are compared on the same work)")
    results["step"] = out


def trainer_overrides(variant):
    """Model-config overrides of a Trainer run named like `unrolled+no_attn_dropout`."""
    parts = set(variant.split("+"))
    known = {"scan", "unrolled", "xla", "cudnn", "fused_dropout", "no_attn_dropout", "no_dropout", "rbg", "triton",
             "cmdbuf", "cublaslt", "nomerge"}
    unknown = parts - known - {p for p in parts if p.startswith("docs") and p[4:].isdigit()}
    if unknown:
        raise SystemExit(f"unknown trainer variant part(s) {sorted(unknown)} in {variant!r}; "
                         f"known: {sorted(known)} and docsN")
    if {"scan", "unrolled"} <= parts:
        raise SystemExit(f"trainer variant {variant!r} asks for both scan and unrolled")
    overrides = {"scan_layers": "scan" in parts, "fused_attention_dropout": "fused_dropout" in parts}
    if "xla" in parts or "cudnn" in parts:
        overrides["attention_implementation"] = "xla" if "xla" in parts else "cudnn"
    if "no_attn_dropout" in parts or "no_dropout" in parts:
        overrides["attention_dropout_rate"] = 0.0
    if "no_dropout" in parts:
        overrides["dropout_rate"] = 0.0
    return overrides


def trainer_compiler_options(variant):
    """Compiler options a variant adds to the library's defaults: `triton` turns XLA's Triton GEMMs back on,
    `cmdbuf` gives XLA its default command buffers back, `cublaslt` asks for cuBLASLt matmuls (their epilogues),
    `nomerge` keeps XLA from merging the q/k/v projections into one matmul."""
    parts = variant.split("+")
    options = {}
    if "cublaslt" in parts:
        options["xla_gpu_enable_cublaslt"] = True
    if "nomerge" in parts:
        options["xla_gpu_dot_merger_threshold_mb"] = 0
    if "triton" in parts:
        options["xla_gpu_enable_triton_gemm"] = True
    if "cmdbuf" in parts:
        options["xla_gpu_enable_command_buffer"] = "FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN"
    return options


def documents_of(variant, default=32):
    """The `docsN` part of a variant (packed documents per row), else `default`."""
    found = [int(p[4:]) for p in variant.split("+") if p.startswith("docs") and p[4:].isdigit()]
    return found[0] if found else default


def trainer_env(dump_hlo=None):
    """The environment of a child process that dumps XLA's optimised HLO of the train step into `dump_hlo`
    (XLA flags must be set before JAX starts); None: inherit this one."""
    if not dump_hlo:
        return None
    flags = [f"--xla_dump_to={dump_hlo}", "--xla_dump_hlo_as_text", "--xla_dump_hlo_module_re=.*step.*"]
    return {**os.environ, "XLA_FLAGS": " ".join([os.environ.get("XLA_FLAGS", ""), *flags]).strip()}


def trainer_stepper(trainer, state, batch):
    """One synchronised `Trainer` step per call, carrying the state along."""
    import jax

    held = {"state": state}

    def step():
        held["state"], metrics = trainer.train_step(held["state"], batch)
        jax.block_until_ready(metrics)

    return step


def section_trainer(args, results):
    """RoFormerV2 base through the real `Trainer` and `MaskedLMTask`, one row per --trainer-variants entry."""
    out = results.setdefault("trainer", {})
    variants = [v for v in args.trainer_variants.split(",") if v]
    if args.isolate and len(variants) > 1:
        for variant in variants:
            dump = args.dump_hlo if args.profile_variant == f"trainer:{variant}" else None
            child, why = run_child(child_command(args, "trainer", "--trainer-variants", variant,
                                                 "--profile-variant", args.profile_variant,
                                                 *(["--profile", args.profile] if args.profile else [])),
                                   env=trainer_env(dump))
            if child is not None and "trainer" not in child:
                why = child.get("failures", {}).get("trainer", "no result")
                child = None
            if child is None:
                print(f"== trainer {variant}: FAILED {why}", flush=True)
                results.setdefault("failures", {})[f"trainer:{variant}"] = why
                continue
            out.update(child["trainer"])
            results.update(device=child["device"], jax=child["jax"])
        return

    import jax
    import numpy as np
    import optax

    from rofjax.data.tokenizer import Tokenizer
    from rofjax.models import get_preset
    from rofjax.parallel.mesh import create_mesh, global_batch
    from rofjax.training.state import Trainer
    from rofjax.training.tasks.mlm import MaskedLMTask

    vocab = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rofjax", "data", "vocab",
                         "snownlp_char.txt")
    for variant in variants:
        config = get_preset("roformer_v2_chinese_char_base", dtype=args.dtype, **trainer_overrides(variant))
        task = MaskedLMTask(config, Tokenizer(vocab), max_length=args.length, max_documents=documents_of(variant))
        mesh = create_mesh()
        prng = "unsafe_rbg" if "rbg" in variant.split("+") else "threefry"
        trainer = Trainer(task, optax.adamw(1e-4, weight_decay=0.01), mesh, dropout_prng=prng,
                          compiler_options=trainer_compiler_options(variant))
        start = time.perf_counter()
        state = trainer.init_state(0, args.batch)
        jax.block_until_ready(state)
        init_s = time.perf_counter() - start
        rng = np.random.default_rng(0)
        batch = task.init_batch(args.batch)
        batch["input_ids"] = rng.integers(5, config.vocab_size, size=batch["input_ids"].shape).astype(np.int32)
        P = task.max_predictions
        batch["masked_positions"] = np.sort(rng.choice(args.length, size=(args.batch, P)), axis=1).astype(np.int32)
        batch["masked_labels"] = rng.integers(1, config.vocab_size, size=(args.batch, P)).astype(np.int32)
        batch["masked_weights"] = np.ones((args.batch, P), np.float32)
        batch = global_batch(batch, mesh)
        start = time.perf_counter()
        state, metrics = trainer.train_step(state, batch)
        jax.block_until_ready(metrics)
        compile_s = time.perf_counter() - start
        samples = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for _ in range(args.steps):
                state, metrics = trainer.train_step(state, batch)
            jax.block_until_ready(metrics)
            samples.append((time.perf_counter() - start) / args.steps)
        seconds = statistics.median(samples)
        peak = peak_flops(args, jax.devices()[0].device_kind)
        flops = args.batch * task.flops_per_example()
        out[variant] = {"step_ms": seconds * 1e3, "tokens_per_s": args.batch * args.length / seconds,
                        "mfu": flops / seconds / peak if peak else None, "compile_s": compile_s, "init_s": init_s,
                        "loss": float(metrics["loss"])}
        print(f"== trainer roformer_v2_base {variant} {args.batch}×{args.length}: {seconds * 1e3:.1f} ms/step, "
              f"{args.batch * args.length / seconds:.0f} tok/s, MFU "
              f"{'n/a' if not peak else f'{flops / seconds / peak:.1%}'} "
              f"(3 × (encoder forward + {P} predictions × 2·E·V) per example = {task.flops_per_example() / 1e9:.1f} "
              f"GFLOP), state {init_s:.1f} s, first step (compile) {compile_s:.1f} s", flush=True)

        trace_if_asked(args, {f"trainer:{variant}": trainer_stepper(trainer, state, batch)})
        del state, trainer


def long_step(args, config, batch, length):
    """Compiled MLM train step of an encoder on random ids; returns (ms/step, reserved GiB)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import linen as nn

    from rofjax.losses import masked_lm_crossentropy
    from rofjax.models import Encoder
    from rofjax.nn.embedding import gather_positions

    model = Encoder(config)
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(5, config.vocab_size, size=(batch, length)), jnp.int32)
    P = max(1, int(length * 0.15))
    positions = jnp.asarray(np.sort(rng.choice(length, size=(batch, P)), axis=1), jnp.int32)
    labels = jnp.take_along_axis(ids, positions, 1)
    params = jax.jit(lambda: nn.unbox(model.init(jax.random.key(0), ids[:, :8], method=Encoder.masked_lm)))()
    params = params["params"]
    tx = optax.adamw(1e-4)
    opt = tx.init(params)

    def step(p, o, key):
        def loss_fn(p):
            hidden = model.apply({"params": p}, ids, deterministic=False, rngs={"dropout": key})
            picked = gather_positions(hidden, positions, method=config.embedding_lookup)
            logits = model.apply({"params": p}, picked, method=Encoder.mlm_logits)
            return masked_lm_crossentropy(labels, logits)

        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o, jax.random.fold_in(key, 1), loss

    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt, jax.random.key(1)).compile()
    reserved = compiled_bytes(compiled)
    if args.compile_only:
        return None, gib(reserved)
    key = jax.random.key(1)
    params, opt, key, loss = compiled(params, opt, key)
    float(loss)
    samples = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(max(1, args.steps // 2)):
            params, opt, key, loss = compiled(params, opt, key)
        float(loss)
        samples.append((time.perf_counter() - start) / max(1, args.steps // 2))
    return statistics.median(samples) * 1e3, gib(reserved)


def section_long(args, results):
    from rofjax.models import get_preset

    out = {}
    tokens = args.long_tokens
    for length in (int(n) for n in args.long_lengths.split(",")):
        batch = max(1, tokens // length)
        for family in args.long_families.split(","):
            preset = "roformer_v2_chinese_char_base" if family == "roformer_v2" else "gau_alpha_chinese_char_base"
            chunked = family == "gau_alpha" and length >= 2048 and args.gau_chunk > 0
            extra = {"gau_chunk_size": args.gau_chunk} if chunked else {}
            scan = family == "gau_alpha" or args.scan
            config = get_preset(preset, dtype=args.dtype, scan_layers=scan, **extra)
            name = f"{family}@{batch}x{length}" + (f"+chunk{args.gau_chunk}" if extra else "")
            try:
                ms, reserved = long_step(args, config, batch, length)
            except Exception as e:   # noqa: BLE001 (an out-of-memory shape is a result)
                print(f"== long {name}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
                out[name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
                continue
            if ms is None:
                out[name] = {"peak_gib": reserved}
                print(f"== long {name}: compiled step reserves {reserved:.2f} GiB", flush=True)
                continue
            out[name] = {"step_ms": ms, "tokens_per_s": batch * length / ms * 1e3, "peak_gib": reserved}
            print(f"== long {name}: {ms:.1f} ms/step, {batch * length / ms * 1e3:.0f} tok/s, "
                  f"{reserved:.2f} GiB", flush=True)
    results["long"] = out


def compile_seconds(args, layers):
    """Seconds to lower and compile the MLM train step of a scanned RoFormerV2 base with `layers` layers."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import linen as nn

    from rofjax.losses import masked_lm_crossentropy
    from rofjax.models import Encoder, get_preset

    config = get_preset("roformer_v2_chinese_char_base", num_layers=layers, dtype=args.dtype, scan_layers=True)
    model = Encoder(config)
    ids = jnp.ones((args.batch, args.length), jnp.int32)
    params = jax.eval_shape(lambda: nn.unbox(model.init(jax.random.key(0), ids, method=Encoder.masked_lm)))
    params = params["params"]
    tx = optax.adamw(1e-4)
    opt = jax.eval_shape(tx.init, params)

    def step(p, o, key):
        def loss_fn(p):
            logits = model.apply({"params": p}, ids, deterministic=False, rngs={"dropout": key},
                                 method=Encoder.masked_lm)
            return masked_lm_crossentropy(ids, logits)

        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    start = time.perf_counter()
    jax.jit(step).lower(params, opt, jax.random.key(0)).compile()
    return time.perf_counter() - start


def section_compile(args, results):
    compile_seconds(args, 1)          # the first compile of a process pays one-time costs; keep them out
    out = {f"layers_{layers}": compile_seconds(args, layers) for layers in (2, 24)}
    out["ratio_24_over_2"] = out["layers_24"] / out["layers_2"]
    print(f"== compile (scan_layers): 2 layers {out['layers_2']:.1f} s, 24 layers {out['layers_24']:.1f} s, "
          f"ratio {out['ratio_24_over_2']:.2f} (goal ≤ 1.5)", flush=True)
    results["compile"] = out


def main(argv=None):
    args = parse_args(argv)
    configure(args)
    results = {"batch": args.batch, "length": args.length, "dtype": args.dtype, "date": time.strftime("%Y-%m-%d")}
    # Isolated (the GPU default), this process never starts JAX: every JAX run is a child process.
    if args.sections not in ("torch", "hlo") and not args.isolate:
        import jax

        if args.device == "gpu" and jax.default_backend() != "gpu":
            raise SystemExit(f"--device gpu but JAX runs on {jax.default_backend()}")
        results.update(device=jax.devices()[0].device_kind, jax=jax.__version__)
    sections = {"step": section_step, "trainer": section_trainer, "long": section_long,
                "compile": section_compile, "torch": section_torch, "variant": section_variant, "hlo": section_hlo}
    for name in args.sections.split(","):
        if name not in sections:
            raise SystemExit(f"unknown section {name!r}; expected {sorted(sections)}")
        try:
            if args.isolate and name in ("long", "compile"):
                child, why = run_child(child_command(args, name))
                if child is not None and name not in child:
                    child, why = None, child.get("failures", {}).get(name, "no result")
                if child is None:
                    raise RuntimeError(why)
                results[name] = child[name]
                results.update(device=child["device"], jax=child["jax"])
            else:
                sections[name](args, results)
        except Exception as e:   # noqa: BLE001 (later sections still run; the failure is reported)
            import traceback

            traceback.print_exc()
            results.setdefault("failures", {})[name] = f"{type(e).__name__}: {str(e)[:400]}"
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(results, f, indent=2)
    if results.get("failures"):
        print("failures: " + json.dumps(results["failures"], indent=1))


if __name__ == "__main__":
    main()
