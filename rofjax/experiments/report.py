"""What every experiment writes: per-seed rows kept as they finish, a markdown table of mean ± std over seeds, and
one PNG figure per claim.

`Runs` appends each finished (variant, seed) to `WORKDIR/runs.jsonl` with the settings that produced it, so a rerun
skips the work already done (and never mixes rows of other settings, a smoke run's say, into the table).
`write_results` writes `results.md` and `results.json` whole or not at all.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence


def resolved_settings(config) -> dict:
    """An experiment config as a plain dict, its `smoke_settings` applied when `config.smoke` (and dropped)."""
    settings = config.to_dict()
    smoke = settings.pop("smoke_settings", {}) or {}
    return {**settings, **smoke} if settings.get("smoke") else settings


def settings_key(settings: dict) -> str:
    """A short fingerprint of the settings a row was produced under."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


class Runs:
    """The finished runs of one experiment in `workdir`, keyed by (variant name, seed), for one set of settings."""

    def __init__(self, workdir: str, settings: dict):
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, "runs.jsonl")
        self.settings = settings
        self.key = settings_key(settings)
        self.rows: dict[tuple[str, int], dict] = {}
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        # A line cut short by a kill while it was written: that run is simply done again.
                        if handle.read().strip():
                            raise ValueError(f"{self.path}:{number}: not a JSON line (the file is damaged; delete "
                                             f"it to run the experiment again from the start)") from None
                        break
                    if row.get("settings") == self.key:
                        self.rows[(row["variant"], int(row["seed"]))] = row

    def done(self, variant: str, seed: int) -> dict | None:
        return self.rows.get((variant, seed))

    def add(self, variant: str, seed: int, config: dict, metrics: dict, curves: dict | None = None) -> dict:
        row = {"settings": self.key, "variant": variant, "seed": int(seed), "config": config,
               "metrics": {k: float(v) for k, v in metrics.items()}, "curves": curves or {}}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.rows[(variant, int(seed))] = row
        return row

    def run(self, variant: str, seeds: Iterable[int], config: dict, fn: Callable[[int], tuple[dict, dict]],
            log: Callable[[str], None] = print) -> list[dict]:
        """`fn(seed) → (metrics, curves)` for every seed not yet done; the rows of all seeds, in seed order."""
        rows = []
        for seed in seeds:
            row = self.done(variant, seed)
            if row is None:
                metrics, curves = fn(seed)
                row = self.add(variant, seed, config, metrics, curves)
                shown = ", ".join(f"{k} {v:.4g}" for k, v in row["metrics"].items())
                log(f"{variant} seed {seed}: {shown}")
            rows.append(row)
        return rows


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value); NaN values (diverged runs) propagate."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def format_mean_std(values: Sequence[float], digits: int = 3, percent: bool = False) -> str:
    scale = 100.0 if percent else 1.0
    mean, std = mean_std([v * scale for v in values])
    if math.isnan(mean):
        return "diverged" if all(math.isnan(v) for v in values) else \
            f"{sum(math.isnan(v) for v in values)}/{len(values)} diverged"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(workdir: str, *, title: str, claim: str, settings: dict, sections: Sequence[tuple[str, str]],
                  findings: Sequence[str], figures: Sequence[tuple[str, str]], rows: Sequence[dict]) -> str:
    """`results.md`: the claim, what was found, the tables (`sections`: (heading, markdown)), the figures
    ((file name, caption)) and the settings; `results.json`: the same rows, per seed. Returns the .md path."""
    parts = [f"# {title}", "", f"**Claim.** {claim}", "", "**Found.**", ""]
    parts += [f"- {finding}" for finding in findings]
    for heading, body in sections:
        parts += ["", f"## {heading}", "", body]
    if figures:
        parts += ["", "## Figures", ""]
        parts += [f"![{caption}]({name})\n\n*{caption}*\n" for name, caption in figures]
    parts += ["", "## Settings", "", "```json", json.dumps(settings, indent=2, sort_keys=True, default=str), "```", ""]
    path = os.path.join(workdir, "results.md")
    _atomic_write(path, "\n".join(parts))
    _atomic_write(os.path.join(workdir, "results.json"),
                  json.dumps({"title": title, "settings": settings, "rows": list(rows)}, indent=1, default=str))
    return path


def file_figure(nrows: int = 1, ncols: int = 1, **kwargs):
    """`(figure, axes)` as `plt.subplots` gives them, for a figure that is only saved to a file. It is made without
    pyplot, so the process's backend is neither switched nor needed: a notebook that runs an experiment in its own
    kernel keeps drawing inline."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=kwargs.pop("figsize", None))
    return figure, figure.subplots(nrows, ncols, **kwargs)


def plot_curves(path: str, series: dict[str, Sequence[dict]], *, curve: str, xlabel: str, ylabel: str, title: str,
                logy: bool = False, ylim=None, styles: dict[str, dict] | None = None) -> str:
    """One line per entry of `series` (label → rows of that variant, one per seed): the mean over seeds of the
    curve named `curve` (each row's `curves[curve]` is `[[step, value], ...]`), with a band of ± one std.
    `styles`: matplotlib line keywords per label (colour, linestyle); otherwise up to 20 distinct colours."""
    import matplotlib
    import numpy as np

    figure, axis = file_figure(figsize=(7, 4.5))
    palette = matplotlib.colormaps["tab10" if len(series) <= 10 else "tab20"].colors
    for index, (label, rows) in enumerate(series.items()):
        curves = [np.asarray(row["curves"][curve], dtype=float) for row in rows if row["curves"].get(curve)]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        stacked = np.stack([c[:length] for c in curves])
        steps, values = stacked[0, :, 0], stacked[:, :, 1]
        mean = values.mean(axis=0)
        style = {"color": palette[index % len(palette)], **((styles or {}).get(label, {}))}
        line, = axis.plot(steps, mean, label=label, **style)
        if len(curves) > 1:
            std = values.std(axis=0, ddof=1)
            axis.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    if logy:
        axis.set_yscale("log")
    if ylim is not None:
        axis.set_ylim(*ylim)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path
