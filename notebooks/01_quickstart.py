# %% [markdown]
# # rofjax quick start: entities from raw text, and what the encoder attends to
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rofjax/rofjax/blob/main/notebooks/01_quickstart.ipynb)
#
# This notebook trains a small RoFormerV2 with an Efficient GlobalPointer head for nested PER / LOC / ORG entities on
# People's Daily 1998-01 (the corpus ships inside rofjax), exports it, runs `rofjax.pipeline` on sentences it has
# never seen, and draws the encoder's attention for one of them. On a CPU runtime the training takes a few minutes;
# set `ROFJAX_SMOKE=1` to run everything at toy size in seconds (what the tests do).

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

import jax
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML, display

import rofjax
from rofjax.display import heatmap, highlight, token_legend

SMOKE = os.environ.get("ROFJAX_SMOKE") == "1"       # toy sizes: the whole notebook in seconds
WORK = os.environ.get("ROFJAX_WORK", "runs")        # where runs and exported models go
print(f"rofjax {rofjax.__version__}, jax {jax.__version__} on {jax.devices()[0].platform}" + (" (smoke)" if SMOKE else ""))

# %% [markdown]
# ## 1. Train
#
# `configs/ie/peoples_daily_ner.py` is the config `rofjax demo` and `rofjax finetune --config ie/peoples_daily_ner`
# run: a 2-layer, 128-wide RoFormerV2 from scratch, Efficient GlobalPointer, AdamW 2e-3. Configs are
# `ml_collections` dicts, locked against misspelt keys; change any value before the run. `rofjax.training.loop.run`
# is the whole training program: it checkpoints, evaluates, keeps the best parameters, and resumes when run again.

# %%
from configs.ie import peoples_daily_ner
from rofjax.training.loop import run

config = peoples_daily_ner.get_config()
config.train.progress_bar = False
if SMOKE:
    config.train.total_steps = 8
    config.train.batch_size = 8
    config.eval.every = config.train.save_every = 8
    config.eval.examples = 16
else:
    config.train.total_steps = 1500

run_dir = os.path.join(WORK, "01_ner")
result = run(config, run_dir)
print({name: round(value, 4) for name, value in result.items() if isinstance(value, float)})

# %% [markdown]
# ## 2. Export and predict
#
# `rofjax.export.export` writes a self-contained folder (weights as safetensors, model config, vocabulary, label set,
# a model card); `rofjax.pipeline` loads it, or a run folder, or a Hugging Face hub id. Texts longer than the model's
# window are read in overlapping windows; the entity offsets are character offsets into the text.

# %%
from rofjax.export import export

model_dir = export(run_dir, os.path.join(WORK, "01_ner_model"), overwrite=True)
ner = rofjax.pipeline("ner", model_dir)

sentences = ["国务院总理李鹏今天在北京会见了美国国务卿奥尔布赖特。",
             "新华社上海一月五日电，复旦大学的研究人员在长江口发现了新的鸟类栖息地。",
             "江泽民主席向南非总统曼德拉致电祝贺。"]
found = ner(sentences)
for sentence, entities in zip(sentences, found):
    display(HTML(highlight(sentence, [(e["start"], e["end"], e["type"]) for e in entities])))

# %%
rows = "".join(f"<tr><td>{e['text']}</td><td>{e['type']}</td><td>{e['start']}–{e['end']}</td><td>{e['score']:.2f}</td></tr>"
               for entities in found for e in entities)
display(HTML("<table><tr><th>text</th><th>type</th><th>characters</th><th>logit</th></tr>" + rows + "</table>"))

# %% [markdown]
# ## 3. What the encoder attends to
#
# Every attention layer records its normalised weights in Flax's `intermediates` collection when asked
# (`mutable=["intermediates"]`; the fused attention kernels never form the weights, so asking takes the explicit
# path, which gives the same output). Below: each head of each layer for the first sentence, queries as rows and
# keys as columns. A head that reads a fixed neighbour (the previous or the next character) draws a line just below
# or above the diagonal: with RoPE the score of a query and a key depends on their distance, so such a head costs
# the model nothing to learn.

# %%
from rofjax.export import load

model = load(model_dir)
tokenizer = model.task.tokenizer
ids, _, offsets = tokenizer.encode(sentences[0])
special = {tokenizer.cls_id: "[CLS]", tokenizer.sep_id: "[SEP]"}
tokens = [special.get(i) or sentences[0][start:end] for i, (start, end) in zip(ids, offsets)]
_, state = model.task.model.apply({"params": model.params}, np.asarray([ids], np.int32), mutable=["intermediates"])
weights = [np.asarray(leaf)[0] for path, leaf in sorted(jax.tree_util.tree_leaves_with_path(state["intermediates"]),
                                                        key=lambda item: jax.tree_util.keystr(item[0]))
           if "attention_weights" in jax.tree_util.keystr(path)]
layers, heads = len(weights), weights[0].shape[0]
fig, axes = plt.subplots(layers, heads, figsize=(4.2 * heads, 3.8 * layers), squeeze=False)
for layer, layer_weights in enumerate(weights):
    for head in range(heads):
        heatmap(axes[layer, head], layer_weights[head], tokens, title=f"layer {layer + 1}, head {head + 1}",
                colorbar=False, vmin=0)
fig.tight_layout()
plt.show()
print(token_legend(tokens))
