# %% [markdown]
# # GPLinker event extraction, step by step
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rofjax/rofjax/blob/main/notebooks/03_gplinker_events.ipynb)
#
# GPLinker extracts events as a graph: one GlobalPointer finds the arguments (a span per event type and role, the
# trigger being one of the roles), two more link the arguments of one event, head token to head token and tail
# token to tail token, and every maximal clique of linked arguments becomes an event. This notebook trains a small
# RoFormerV2 GPLinker on DuEE-format data, draws the three logit maps for one sentence, follows the decoder through
# its steps on that sentence, and shows the events found beside the gold ones. On a CPU runtime the training takes a
# few minutes; set `ROFJAX_SMOKE=1` to run everything at toy size in seconds (what the tests do).

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
from IPython.display import HTML, Markdown, display

import rofjax
from rofjax.display import PALETTE, heatmap, highlight, token_legend

SMOKE = os.environ.get("ROFJAX_SMOKE") == "1"       # toy sizes: the whole notebook in seconds
WORK = os.environ.get("ROFJAX_WORK", "runs")        # where runs and exported models go
print(f"rofjax {rofjax.__version__}, jax {jax.__version__} on {jax.devices()[0].platform}" + (" (smoke)" if SMOKE else ""))

# %% [markdown]
# ## 1. Train
#
# `configs/ie/duee.py` trains GPLinker for events in the DuEE 1.0 format: a 2-layer, 128-wide RoFormerV2 from
# scratch, an Efficient GlobalPointer over the (event type, role) classes and one head–head and one tail–tail link
# pointer, all trained with the sparse ZLPR loss. Without `config.data.data_dir` (the folder of the real DuEE
# files), a seeded generator writes DuEE-format data with known answers: sentences holding several events of four
# types, two prison sentences sharing one trigger, one winner beating two rivals, a seller nested inside the asset
# it sells. The config trains for 1,500 steps; here the run is cut to 600 (the table shows what they reach) and
# evaluates once, at the end, on the held-out generated sentences. Event F1 counts an event right when its type and every argument (role and text)
# match a gold event; argument F1 scores the (event type, role, text) triples on their own.

# %%
from configs.ie import duee
from rofjax.training.loop import run

config = duee.get_config()
config.train.progress_bar = False
config.eval.every = 0                      # evaluate once, after the last step
if SMOKE:
    config.train.total_steps = config.train.save_every = 6
    config.train.batch_size = 8
    config.eval.examples = 8
else:
    config.train.total_steps = config.train.save_every = 600

run_dir = os.path.join(WORK, "03_events")
result = run(config, run_dir)
display(Markdown("| steps | dev sentences | event F1 | event precision | event recall | argument F1 |\n"
                 "| --- | --- | --- | --- | --- | --- |\n"
                 f"| {config.train.total_steps} | {result['examples']} | {result['event_f1']:.3f} | "
                 f"{result['event_precision']:.3f} | {result['event_recall']:.3f} | {result['argument_f1']:.3f} |"))

# %% [markdown]
# ## 2. Three logit maps for one sentence
#
# `rofjax.export.load` reads the run folder's best parameters into the event task (tokenizer, model, labels,
# decoding). The sentence is the first dev sentence made of a prison sentencing (two events sharing the trigger
# 有期徒刑 and the time) and an acquisition (the seller nested in the asset sold, so two arguments share a head
# token), and nothing else. `task.predict`, jitted as `task.decode` jits it, gives the model's three outputs for
# it: argument logits `[classes, n, n]` and head–head and tail–tail link logits `[1, n, n]`, over the `n` tokens
# of the sentence with [CLS] and [SEP]. (The predictions of sections 2 to 4 run one sentence at a time, so the
# model is compiled once for them all.)

# %%
from rofjax.data.datasets import get_dataset
from rofjax.export import load
from rofjax.training.tasks.base import padded_ids

model = load(run_dir)
task, params = model.task, model.params
dev = get_dataset(config.data.dataset).split("validation", config.data.data_dir, config.seed)


def event_types(record):
    return {event[0][0] for event in record["events"]}


example = next(dev[i] for i in range(len(dev)) if event_types(dev[i]) == {"司法行为-入狱", "财经/交易-出售/收购"})
text = example["text"]
ids, _, offsets = task.tokenizer.encode(text, maxlen=task.max_length)
special = {task.tokenizer.cls_id: "[CLS]", task.tokenizer.sep_id: "[SEP]"}
tokens = [special.get(i) or text[start:end] for i, (start, end) in zip(ids, offsets)]
# As task.decode does: the jitted predict on a row padded to the model's length, cut back to the sentence's tokens.
predict = task.jitted(task.predict)
outputs = jax.device_get(predict(params, {"input_ids": padded_ids(ids, task.max_length)[None]}))
argu_logits, head_logits, tail_logits = (np.asarray(x[0, :, :len(ids), :len(ids)]) for x in outputs)
print(text)
print(f"{len(tokens)} tokens; argument logits {argu_logits.shape}, head links {head_logits.shape}, "
      f"tail links {tail_logits.shape}; {len(task.labels)} (event type, role) classes; threshold {task.threshold}")

# %% [markdown]
# Rows are a span's (or a link's) first token, columns its second; the pointers mask the lower triangle, left blank
# here. The argument map shows, for each cell, the largest logit over the classes, so a cell is red where some
# (event type, role) fires; the table in section 3 says which. A head–head cell (i, j) links the arguments starting
# at tokens i and j, a tail–tail cell the arguments ending at i and j; the decoder reads only the cells of
# arguments it found. Black squares mark the cells above the threshold (0). Each map's colour scale runs from minus
# to plus its largest logit, so the cells above the threshold are red and the far negative rest saturates in blue.

# %%
n = len(tokens)
upper = np.triu(np.ones((n, n), bool))
maps = [("argument logits: max over the (event type, role) classes", argu_logits.max(0), "head", "tail"),
        ("head–head link logits", head_logits[0], "head of one argument", "head of the other"),
        ("tail–tail link logits", tail_logits[0], "tail of one argument", "tail of the other")]
fig, axes = plt.subplots(1, 3, figsize=(19, 6.2))
for ax, (title, matrix, row_name, col_name) in zip(axes, maps):
    limit = max(float(matrix[upper].max()), 1.0)
    heatmap(ax, np.where(upper, np.clip(matrix, -limit, limit), np.nan), tokens, title=title, cmap="RdBu_r",
            vmin=-limit, vmax=limit)
    rows, cols = np.nonzero(upper & (matrix > task.threshold))
    ax.scatter(cols, rows, marker="s", s=28, facecolors="none", edgecolors="black", linewidths=0.8)
    ax.set_ylabel(f"token: {row_name}", fontsize=8)
    ax.set_xlabel(f"token: {col_name}", fontsize=8)
fig.tight_layout()
plt.show()
print(token_legend(tokens))

# %% [markdown]
# ## 3. Decoding, step by step
#
# `rofjax.decode.extract_events` turns the three maps into events; `extract_events_steps` is the same function
# returning what it computes on the way (`EventSteps`), so each table below is the real decoder's intermediate
# result. First, the candidate arguments: every (class, head, tail) cell above the threshold, with head ≤ tail and
# [CLS] and [SEP] left out.

# %%
from rofjax.decode.events import events_to_text, extract_events, extract_events_steps


def argument_text(h, t):
    return text[offsets[h][0]:offsets[t][1]]


steps = extract_events_steps(argu_logits, head_logits, tail_logits, task.labels, threshold=task.threshold)
rows = "".join(f"<tr><td>#{k}</td><td>{event_type}</td><td>{role}</td><td>{h}–{t}</td><td>{argument_text(h, t)}</td>"
               f"<td>{score:.1f}</td></tr>"
               for k, ((event_type, role, h, t), score) in enumerate(zip(steps.arguments, steps.scores)))
display(HTML("<table><tr><th>#</th><th>event type</th><th>role</th><th>tokens</th><th>text</th><th>logit</th></tr>"
             + rows + "</table>"))

# %% [markdown]
# Next, the links. Two arguments are joined when the head–head cell of their head tokens and the tail–tail cell of
# their tail tokens are both above the threshold (the cell with the smaller token first). The table lists every pair
# of candidates with at least one of the two links, with both logits; the decoder keeps the pairs linked in both,
# and only within an event type.

# %%
pairs = [(i, j) for i in range(len(steps.arguments)) for j in range(i + 1, len(steps.arguments))
         if steps.head_linked[i, j] or steps.tail_linked[i, j]]


def link_logit(logits, a, b):
    return logits[0, min(a, b), max(a, b)]


rows = []
for i, j in pairs:
    (type_i, _, h_i, t_i), (type_j, _, h_j, t_j) = steps.arguments[i], steps.arguments[j]
    edge = "yes" if steps.linked[i, j] and type_i == type_j else ("other type" if steps.linked[i, j] else "no")
    rows.append(f"<tr><td>#{i} {argument_text(h_i, t_i)}</td><td>#{j} {argument_text(h_j, t_j)}</td>"
                f"<td>({min(h_i, h_j)}, {max(h_i, h_j)}) {link_logit(head_logits, h_i, h_j):.1f}</td>"
                f"<td>({min(t_i, t_j)}, {max(t_i, t_j)}) {link_logit(tail_logits, t_i, t_j):.1f}</td>"
                f"<td>{edge}</td></tr>")
display(HTML("<table><tr><th>argument</th><th>argument</th><th>head–head cell, logit</th>"
             "<th>tail–tail cell, logit</th><th>edge of the graph</th></tr>" + "".join(rows) + "</table>"))
head_only = sum(bool(steps.head_linked[i, j] and not steps.tail_linked[i, j]) for i, j in pairs)
tail_only = sum(bool(steps.tail_linked[i, j] and not steps.head_linked[i, j]) for i, j in pairs)
print(f"{len(steps.arguments)} arguments, {len(pairs)} linked pairs: {len(pairs) - head_only - tail_only} in both "
      f"head and tail, {head_only} by the head link only, {tail_only} by the tail link only")

# %% [markdown]
# Within each event type the decoder searches the maximal cliques of that graph (Bron–Kerbosch with pivoting,
# `rofjax.decode.maximal_cliques`, which returns exactly the events of the authors' recursive search). The figure
# puts the candidates on a circle, grouped by event type, draws the edges, and colours each clique; an argument or
# an edge in two cliques (a shared trigger or time) gets both colours.

# %%
from matplotlib.patches import Wedge

cliques = [(event_type, clique) for event_type, found in steps.cliques.items() for clique in found]
colour_of = {index: PALETTE[index % len(PALETTE)] for index in range(len(cliques))}
count = len(steps.arguments)
angles = np.pi / 2 - 2 * np.pi * np.arange(count) / max(count, 1)
xy = np.stack([np.cos(angles), np.sin(angles)], 1)
fig, ax = plt.subplots(figsize=(6.5, 6.5))
for i in range(count):
    for j in range(i + 1, count):
        if steps.linked[i, j] and steps.arguments[i][0] == steps.arguments[j][0]:
            shared = [c for c, (_, clique) in enumerate(cliques) if i in clique and j in clique] or [None]
            # an edge of several cliques is drawn once per clique, side by side
            normal = np.array([xy[i, 1] - xy[j, 1], xy[j, 0] - xy[i, 0]]) / np.linalg.norm(xy[i] - xy[j])
            for k, c in enumerate(shared):
                shift = (k - (len(shared) - 1) / 2) * 0.045 * normal
                ax.plot(*(xy[[i, j]] + shift).T, color="0.6" if c is None else colour_of[c], lw=2.2, zorder=1)
        elif steps.head_linked[i, j] or steps.tail_linked[i, j] or steps.linked[i, j]:
            ax.plot(*xy[[i, j]].T, color="0.75", lw=0.8, ls=":", zorder=0)
for i in range(count):
    member_of = [c for c, (_, clique) in enumerate(cliques) if i in clique] or [None]
    for k, c in enumerate(member_of):
        ax.add_patch(Wedge(xy[i], 0.085, 360 * k / len(member_of), 360 * (k + 1) / len(member_of),
                           facecolor="white" if c is None else colour_of[c], edgecolor="black", lw=0.8, zorder=2))
    ax.text(*xy[i], f"#{i}", ha="center", va="center", fontsize=8, zorder=3)
    ax.text(*(xy[i] * 1.2), f"{steps.arguments[i][2]}–{steps.arguments[i][3]}", ha="center", va="center",
            fontsize=7, color="0.35")
ax.set_xlim(-1.35, 1.35)
ax.set_ylim(-1.35, 1.35)
ax.set_aspect("equal")
ax.axis("off")
ax.set_title(f"{count} arguments (# as in the table, grey: token span), {len(cliques)} cliques;\n"
             "solid: linked in head and tail, dotted: one link only or across event types", fontsize=9)
plt.show()

# %% [markdown]
# Each clique is one event; the decoder then drops duplicates and events contained in another event of the same
# type. Mapping the token spans back to characters (`events_to_text`) gives the events as `task.decode` returns them
# for the whole sentence, which the last lines check.

# %%
kept = set(steps.events)
rows = []
for c, (event_type, clique) in enumerate(cliques):
    event = tuple(steps.arguments[k] for k in clique)
    members = ", ".join(f"#{k} {steps.arguments[k][1]} {argument_text(*steps.arguments[k][2:])}" for k in clique)
    rows.append(f'<tr><td style="background:{colour_of[c]}">{c + 1}</td><td>{event_type}</td><td>{members}</td>'
                f"<td>{'event' if event in kept else 'dropped (contained in another)'}</td></tr>")
display(HTML("<table><tr><th>clique</th><th>event type</th><th>arguments</th><th>result</th></tr>" + "".join(rows)
             + "</table>"))
decoded = sorted(tuple(e) for e in events_to_text(steps.events, offsets, text))
print("the same events as extract_events:",
      steps.events == extract_events(argu_logits, head_logits, tail_logits, task.labels, threshold=task.threshold))
print("the same events as task.decode:", decoded == sorted(tuple(e) for e in task.decode(params, [example], 1)[0]))
print("the same events as the gold ones:", decoded == sorted(tuple(sorted(e)) for e in example["events"]))

# %% [markdown]
# ## 4. Events in their text, beside the gold events
#
# `task.decode` runs the same prediction and decoder over a list of dev sentences (and over overlapping windows of
# any text longer than the model's window). Each event is one line: its type, then the sentence with the trigger
# (触发词) and the arguments marked with their roles. Left the model's events, right the gold ones. Where spans nest
# (the seller inside the asset sold), the shared characters take the inner span's colour and the outer span's role
# follows its end.

# %%
others = [dev[i] for i in range(len(dev)) if len(dev[i]["events"]) >= 2 and dev[i]["id"] != example["id"]]
shown = [example] + others[:0 if SMOKE else 3]
found = task.decode(params, shown, 1)
colours = {"触发词": PALETTE[0]}
for event_type in dict.fromkeys(t for t, _ in task.labels):
    # more roles than colours: only the roles of one event type need to differ
    roles = [role for t, role in task.labels if t == event_type]
    for role in roles:
        if role not in colours:
            taken = {colours.get(other) for other in roles}
            colours[role] = next((c for c in PALETTE if c not in taken), PALETTE[len(colours) % len(PALETTE)])


def event_lines(record_text, events):
    if not events:
        return "<i>no event</i>"
    return "".join(f"<div><b>{event[0][0]}</b>" + highlight(record_text, [(start, start + len(value), role)
                                                                   for _, role, value, start in event], colours=colours)
                   + "</div>" for event in sorted(events))


def comparison(texts, found, expected, headings=("model", "gold")):
    """An HTML table: per text, the events found beside the events expected, and whether they agree."""
    cell = '<td style="text-align:left;vertical-align:top">'
    rows = "".join(f"<tr>{cell}{event_lines(t, a)}</td>{cell}{event_lines(t, b)}</td>"
                   f"<td>{'same' if sorted(map(tuple, a)) == sorted(map(tuple, b)) else 'differs'}</td></tr>"
                   for t, a, b in zip(texts, found, expected))
    return HTML(f"<table><tr><th>{headings[0]}</th><th>{headings[1]}</th><th></th></tr>{rows}</table>")


display(comparison([r["text"] for r in shown], found, [[sorted(e) for e in r["events"]] for r in shown]))

# %% [markdown]
# ## 5. Export and predict on a new sentence
#
# `rofjax.export.export` writes the run as a self-contained folder, and `rofjax.pipeline("events", folder)` reads
# raw text: each event comes back with its type, trigger and arguments at character offsets. The sentence below
# joins two templates of the generator with a time and a head count that its word lists do not hold; on the right,
# its events as the generator annotates such a sentence (the asset sold includes its seller's name). A model
# trained on a few word lists learns the lists along with the task, and words outside them test how far it
# generalises.

# %%
from rofjax.export import export

model_dir = export(run_dir, os.path.join(WORK, "03_events_model"), overwrite=True)
events = rofjax.pipeline("events", model_dir)
sentence = "上周五，网易收购了京东云计算部门。格力裁员3000人。"
predicted = [sorted([(event["type"], argument["role"], argument["text"], argument["start"])
                     for argument in event["arguments"]]
                    + ([(event["type"], "触发词", event["trigger"], event["trigger_start"])] if event["trigger"] else []))
             for event in events(sentence)]
# annotated as the generator annotates: the asset sold includes its seller's name
expected = [[("财经/交易-出售/收购", role, value, sentence.index(value)) for role, value in
             [("时间", "上周五"), ("收购方", "网易"), ("触发词", "收购"), ("交易物", "京东云计算部门"), ("出售方", "京东")]],
            [("组织关系-裁员", role, value, sentence.index(value)) for role, value in
             [("裁员方", "格力"), ("触发词", "裁员"), ("裁员人数", "3000人")]]]
display(comparison([sentence], [predicted], [[sorted(e) for e in expected]], ("pipeline", "expected")))
print(os.path.relpath(model_dir), sorted(os.listdir(model_dir)))
