"""What the notebooks draw: token heatmaps, spans highlighted in their text (HTML), a run's loss as it trains.

matplotlib and IPython are imported only when a function needs them (`pip install 'rofjax[notebooks]'`).
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence

# One colour per label, in order of first appearance; chosen to stay readable behind black text.
PALETTE = ("#ffd54f", "#81d4fa", "#a5d6a7", "#f48fb1", "#ce93d8", "#ffab91", "#b0bec5", "#e6ee9c", "#80cbc4",
           "#bcaaa4")

_FONT_NAMES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
               "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC", "Droid Sans Fallback", "AR PL UMing CN")


def cjk_font() -> str | None:
    """The name of an installed font that draws Chinese characters, or None (Colab and most servers have none:
    `apt install fonts-noto-cjk` adds one)."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in _FONT_NAMES if name in installed), None)


def token_labels(tokens: Sequence[str]) -> list[str]:
    """Axis labels for `tokens`: the tokens themselves where a font can draw them, else their positions (a font
    without the glyphs would draw empty boxes); `token_legend` then prints which token each position is."""
    if cjk_font() is not None or all(token.isascii() for token in tokens):
        return list(tokens)
    return [str(i) for i in range(len(tokens))]


def token_legend(tokens: Sequence[str]) -> str:
    return "  ".join(f"{i}:{token}" for i, token in enumerate(tokens))


def heatmap(ax, matrix, row_tokens: Sequence[str], col_tokens: Sequence[str] | None = None, *, title: str = "",
            cmap: str = "viridis", colorbar: bool = True, **imshow_kwargs):
    """`matrix[i, j]` for row token i and column token j, labelled with the tokens (or their positions)."""
    import numpy as np

    col_tokens = row_tokens if col_tokens is None else col_tokens
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (len(row_tokens), len(col_tokens)):
        raise ValueError(f"matrix of shape {matrix.shape} for {len(row_tokens)} × {len(col_tokens)} tokens")
    font = cjk_font()
    if font is not None:
        import matplotlib

        if font not in matplotlib.rcParams["font.sans-serif"]:
            matplotlib.rcParams["font.sans-serif"] = [font, *matplotlib.rcParams["font.sans-serif"]]
    image = ax.imshow(matrix, cmap=cmap, aspect="auto", **imshow_kwargs)
    ax.set_xticks(range(len(col_tokens)), token_labels(col_tokens), fontsize=7, rotation=90)
    ax.set_yticks(range(len(row_tokens)), token_labels(row_tokens), fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    return image


def highlight(text: str, spans: Sequence[tuple[int, int, str]], *, colours: dict[str, str] | None = None) -> str:
    """`text` as HTML with each `(start, end_exclusive, label)` span marked in its label's colour and the label
    written after it. Spans may nest or overlap: each stretch of text takes the colour of the shortest span over
    it, and every span's label follows its end."""
    colours = dict(colours or {})
    for _, _, label in spans:
        if label not in colours:
            colours[label] = PALETTE[len(colours) % len(PALETTE)]
    for start, end, label in spans:
        if not 0 <= start < end <= len(text):
            raise ValueError(f"span ({start}, {end}, {label!r}) is outside the text of {len(text)} characters")
    cuts = sorted({0, len(text), *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    pieces = []
    for left, right in zip(cuts, cuts[1:]):
        covering = [span for span in spans if span[0] <= left and right <= span[1]]
        chunk = html.escape(text[left:right])
        if covering:
            start, end, label = min(covering, key=lambda span: (span[1] - span[0], span[2]))
            chunk = (f'<span style="background:{colours[label]};padding:1px 0;border-radius:3px" '
                     f'title="{html.escape(label)}">{chunk}</span>')
        pieces.append(chunk)
        ending = sorted(label for _, end, label in spans if end == right)
        pieces += [f'<sub style="color:#555;font-size:70%">{html.escape(label)}</sub>' for label in ending]
    return '<div style="line-height:2;font-size:110%">' + "".join(pieces) + "</div>"


def read_rows(path: str) -> list[dict]:
    """The complete JSON lines of a metrics file that another process may be appending to (a line still being
    written is left for the next read)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]


def train_live(args: Sequence[str], workdir: str, *, metric: str = "loss", eval_metric: str | None = None,
               every: float = 5.0, log: str | None = None, title: str = "") -> tuple[list[dict], list[dict]]:
    """Runs `python -m <args>` (a training program writing `workdir/metrics.jsonl`) and redraws its training loss,
    and `eval_metric` from `eval_metrics.jsonl`, every `every` seconds until it ends. Returns (training rows,
    evaluation rows); a program that fails raises with the end of its output (kept whole in `log`)."""
    import matplotlib.pyplot as plt
    from IPython.display import clear_output, display

    log = log or os.path.join(workdir + ".log")
    os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
    metrics, evals = os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "eval_metrics.jsonl")

    def draw(rows, eval_rows, running):
        fig, loss_ax = plt.subplots(figsize=(7, 3.2))
        if rows:
            loss_ax.plot([r["step"] for r in rows], [r[metric] for r in rows], lw=1, color="tab:blue")
        loss_ax.set_xlabel("step")
        loss_ax.set_ylabel(f"training {metric}", color="tab:blue")
        if eval_metric and eval_rows:
            dev_ax = loss_ax.twinx()
            dev_ax.plot([r["step"] for r in eval_rows], [r[eval_metric] for r in eval_rows], "o-", color="tab:red")
            dev_ax.set_ylabel(f"dev {eval_metric}", color="tab:red")
        state = "training…" if running else "done"
        step = rows[-1]["step"] if rows else 0
        loss_ax.set_title(f"{title} step {step}, {state}".strip(), fontsize=10)
        fig.tight_layout()
        clear_output(wait=True)
        display(fig)
        plt.close(fig)

    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen([sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT)
        try:
            while process.poll() is None:
                time.sleep(every)
                draw(read_rows(metrics), read_rows(evals), running=True)
        except BaseException:
            process.terminate()                # an interrupted cell stops the run; it resumes when run again
            process.wait()
            raise
    rows, eval_rows = read_rows(metrics), read_rows(evals)
    draw(rows, eval_rows, running=False)
    if process.returncode != 0:
        with open(log, encoding="utf-8") as f:
            tail = "".join(f.readlines()[-15:])
        raise RuntimeError(f"python -m {' '.join(args)} exited with {process.returncode}:\n{tail}")
    return rows, eval_rows
