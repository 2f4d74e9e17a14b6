"""The figures of a report, drawn with matplotlib from run records and sweep summaries.

Each function returns a :class:`Figure` (a matplotlib figure with its caption) or ``None`` when
the runs hold nothing to draw; :func:`save` writes it as SVG with text kept as text, and with no
date or random ids inside, so a regenerated report differs only where its numbers do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlx.figures import pyplot as _plt
from mlx.figures import save_svg
from mlx.report.collect import Run, Sweep

# at most this many runs get their own line in an overlaid plot: more turn it into noise
MAX_CURVES = 12
_MISSING = (None, "")


@dataclass
class Figure:
    """A figure of a report.

    Attributes:
        name: file stem (``figures/<name>.svg``).
        title: heading shown above it.
        caption: what it shows and how to read it.
        figure: the matplotlib figure.
    """

    name: str
    title: str
    caption: str
    figure: Any


def save(fig: Figure, folder: Path) -> Path:
    """Write ``fig`` to ``folder/<name>.svg`` and close it; a figure that is already an SVG file
    (an analysis drew it in the run folder) is copied."""
    path = folder / f"{fig.name}.svg"
    if isinstance(fig.figure, Path):
        import shutil

        shutil.copyfile(fig.figure, path)
        return path
    return save_svg(fig.figure, path)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _series(history: list[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    xs = [row["epoch"] for row in history if key in row and "epoch" in row]
    ys = [row[key] for row in history if key in row and "epoch" in row]
    return xs, ys


def _pick_runs(runs: list[Run], objective: tuple[str, str] | None) -> tuple[list[Run], str]:
    """At most MAX_CURVES runs: the best by the objective when there are more."""
    with_history = [r for r in runs if r.record.history]
    if len(with_history) <= MAX_CURVES:
        return with_history, ""
    if objective is not None:
        metric, mode = objective
        scored = [r for r in with_history if _is_number(r.record.metrics.get(metric))]
        scored.sort(key=lambda r: r.record.metrics[metric], reverse=mode == "max")
        return scored[
            :MAX_CURVES
        ], f" The {MAX_CURVES} best runs by {metric} of {len(with_history)} are drawn."
    return with_history[
        :MAX_CURVES
    ], f" The first {MAX_CURVES} of {len(with_history)} runs are drawn."


def learning_curves(runs: list[Run], objective: tuple[str, str] | None = None) -> Figure | None:
    """Train (dashed) and val (solid) curves per epoch for each metric in the runs' histories."""
    chosen, note = _pick_runs(runs, objective)
    if not chosen:
        return None
    names: list[str] = []
    for run in chosen:
        for row in run.record.history:
            for key in row:
                if key.startswith(("train/", "val/")) and key.split("/", 1)[1] not in names:
                    names.append(key.split("/", 1)[1])
    if not names:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.3), squeeze=False)
    colors = plt.get_cmap("tab10" if len(chosen) <= 10 else "tab20")
    for ax, name in zip(axes[0], names, strict=True):
        for i, run in enumerate(chosen):
            color = colors(i % colors.N)
            for split, style in (("train", "--"), ("val", "-")):
                xs, ys = _series(run.record.history, f"{split}/{name}")
                if xs:
                    label = (
                        run.name
                        if split == "val" or not _series(run.record.history, f"val/{name}")[0]
                        else None
                    )
                    ax.plot(xs, ys, style, color=color, linewidth=1.2, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        if name == "loss" and _all_positive(chosen, name):
            ax.set_yscale("log")
    axes[0][-1].legend(
        fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title="run (val)"
    )
    fig.tight_layout()
    caption = "Per-epoch metrics from each run's history.csv: val solid, train dashed." + note
    return Figure("learning_curves", "Learning curves", caption, fig)


def _all_positive(runs: list[Run], name: str) -> bool:
    values = [
        row[k]
        for r in runs
        for row in r.record.history
        for k in (f"train/{name}", f"val/{name}")
        if k in row
    ]
    return bool(values) and all(v > 0 for v in values)


def _objective_points(sweep: Sweep, index: int = 0) -> list[tuple[int, float]]:
    metric = sweep.objectives[index]["metric"]
    return [
        (int(t["number"]), float(t[metric]))
        for t in sweep.trials
        if t.get("state") == "complete" and _is_number(t.get(metric))
    ]


def best_so_far(sweep: Sweep, slug: str) -> Figure | None:
    """Each completed trial's objective and the best found up to that trial."""
    if not sweep.objectives:
        return None
    points = _objective_points(sweep)
    if not points:
        return None
    metric, mode = sweep.objectives[0]["metric"], sweep.objectives[0]["mode"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    xs, ys = zip(*points, strict=True)
    ax.scatter(xs, ys, s=18, color="#4c72b0", alpha=0.7, label="completed trial", zorder=3)
    best: list[float] = []
    for y in ys:
        best.append(y if not best else (max(best[-1], y) if mode == "max" else min(best[-1], y)))
    ax.step(xs, best, where="post", color="#dd8452", linewidth=2, label=f"best so far ({mode})")
    pruned = [int(t["number"]) for t in sweep.trials if t.get("state") == "pruned"]
    failed = [int(t["number"]) for t in sweep.trials if t.get("state") == "fail"]
    for numbers, marker, label in ((pruned, "x", "pruned"), (failed, "v", "failed")):
        if numbers:
            ax.scatter(
                numbers,
                [min(ys)] * len(numbers),
                marker=marker,
                color="grey",
                label=label,
                zorder=3,
            )
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    caption = (
        f"{metric} of each completed trial in the order the trials were asked, and the best so far."
        + (" Pruned and failed trials are marked at the bottom." if pruned or failed else "")
    )
    return Figure(f"best_so_far_{slug}", "Best so far", caption, fig)


def _axis_values(values: list[Any]) -> tuple[list[float], list[str] | None, bool]:
    """Values on a [0, 1] axis: numbers scaled (log when they span decades), others by rank.
    A parameter absent from a trial (a conditional one) sits below the axis, at -0.08."""
    present = [v for v in values if v not in _MISSING]
    if present and all(_is_number(v) for v in present):
        nums = [float(v) for v in present]
        log = min(nums) > 0 and max(nums) / min(nums) >= 100
        lo, hi = (math.log10(min(nums)), math.log10(max(nums))) if log else (min(nums), max(nums))

        def scale(v: Any) -> float:
            if v in _MISSING:
                return -0.08
            x = math.log10(float(v)) if log else float(v)
            return (x - lo) / (hi - lo) if hi > lo else 0.5

        return [scale(v) for v in values], None, log
    labels = sorted({str(v) for v in values})
    pos = {label: i / max(len(labels) - 1, 1) for i, label in enumerate(labels)}
    return [pos[str(v)] for v in values], labels, False


def parallel_coordinates(sweep: Sweep, slug: str) -> Figure | None:
    """One line per completed trial across its parameters and objective, coloured by objective."""
    if not sweep.objectives:
        return None
    metric, mode = sweep.objectives[0]["metric"], sweep.objectives[0]["mode"]
    done = [t for t in sweep.trials if t.get("state") == "complete" and _is_number(t.get(metric))]
    params = [p for p in sweep.params if any(t.get(p) not in _MISSING for t in done)]
    if len(done) < 2 or not params:
        return None
    axes_names = [*params, metric]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.4, 1.5 * len(axes_names)), 3.8))
    columns = []
    for name in axes_names:
        values = [t.get(name) for t in done]
        columns.append((name, values, *_axis_values(values)))
    scores = [float(t[metric]) for t in done]
    lo, hi = min(scores), max(scores)
    cmap = plt.get_cmap("viridis" if mode == "max" else "viridis_r")
    order = sorted(range(len(done)), key=lambda i: scores[i] if mode == "max" else -scores[i])
    for i in order:  # the best trials are drawn last, on top
        ys = [col[2][i] for col in columns]
        color = cmap((scores[i] - lo) / (hi - lo) if hi > lo else 1.0)
        ax.plot(range(len(axes_names)), ys, color=color, alpha=0.8, linewidth=1.2)
    for x, (_name, values, scaled, labels, log) in enumerate(columns):
        ax.axvline(x, color="black", linewidth=0.8)
        if labels is not None:
            for label in labels:
                ax.text(
                    x + 0.03,
                    scaled[[str(v) for v in values].index(label)],
                    label[:18],
                    fontsize=7,
                    va="center",
                )
        else:
            nums = [float(v) for v in values if v not in _MISSING]
            for y, v in ((0.0, min(nums)), (1.0, max(nums))):
                ax.text(x + 0.03, y, f"{v:.3g}", fontsize=7, va="center")
            if len(nums) < len(values):
                ax.text(x + 0.03, -0.08, "not set", fontsize=7, va="center", color="grey")
            if log:
                ax.text(
                    x - 0.03,
                    0.5,
                    "log scale",
                    fontsize=6,
                    ha="right",
                    va="center",
                    rotation=90,
                    color="grey",
                )
    ax.set_xticks(range(len(axes_names)))
    ax.set_xticklabels(
        [n.replace("model.", "").replace("data.", "") for n in axes_names], rotation=20, ha="right"
    )
    ax.set_yticks([])
    ax.set_ylim(-0.14, 1.08)
    ax.grid(False)
    ax.spines["left"].set_visible(False)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(lo, hi))
    fig.colorbar(sm, ax=ax, label=metric, pad=0.02)
    fig.tight_layout()
    caption = (
        f"Each completed trial is a line through its parameter values, coloured by {metric} "
        "(best drawn on top). Numeric axes run from the lowest to the highest value tried; a "
        "conditional parameter a trial did not use is drawn below its axis (not set)."
    )
    return Figure(f"parallel_{slug}", "Parallel coordinates", caption, fig)


def importance(sweep: Sweep, slug: str, values: dict[str, float]) -> Figure | None:
    """A bar per parameter: its share of the objective's variance (fANOVA)."""
    if not values:
        return None
    plt = _plt()
    names = list(values)[::-1]
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(names) + 1.0))
    ax.barh(names, [values[n] for n in names], color="#4c72b0")
    ax.set_xlabel(f"importance for {sweep.objectives[0]['metric']} (fANOVA, sums to 1)")
    fig.tight_layout()
    caption = (
        "Optuna's fANOVA: the share of the objective's variance over the completed trials that each "
        "parameter explains, from a random forest fitted to them."
    )
    return Figure(f"importance_{slug}", "Hyperparameter importance", caption, fig)


def pareto(sweep: Sweep, slug: str) -> Figure | None:
    """A two-objective sweep's trials and its Pareto front."""
    if len(sweep.objectives) != 2:
        return None
    (m1, mode1), (m2, mode2) = ((o["metric"], o["mode"]) for o in sweep.objectives)
    done = [
        t
        for t in sweep.trials
        if t.get("state") == "complete" and _is_number(t.get(m1)) and _is_number(t.get(m2))
    ]
    if not done:
        return None
    front_numbers = {b["number"] for b in sweep.summary.get("best") or []}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    rest = [t for t in done if t["number"] not in front_numbers]
    front = sorted((t for t in done if t["number"] in front_numbers), key=lambda t: t[m2])
    ax.scatter(
        [t[m2] for t in rest], [t[m1] for t in rest], s=18, color="#bbbbbb", label="dominated trial"
    )
    ax.plot(
        [t[m2] for t in front], [t[m1] for t in front], "o-", color="#c44e52", label="Pareto front"
    )
    for t in front:
        ax.annotate(
            str(t["number"]), (t[m2], t[m1]), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    if all(t[m2] > 0 for t in done) and max(t[m2] for t in done) / min(t[m2] for t in done) >= 10:
        ax.set_xscale("log")
    ax.set_xlabel(f"{m2} ({mode2})")
    ax.set_ylabel(f"{m1} ({mode1})")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    caption = f"Completed trials by {m1} and {m2}; the front holds the trials no other trial beats on both (labelled with their number)."
    return Figure(f"pareto_{slug}", "Pareto front", caption, fig)


def metric_vs_cost(sweep: Sweep, slug: str) -> Figure | None:
    """A NAS sweep's candidates: objective against parameter count, top architectures marked."""
    metric = sweep.objectives[0]["metric"] if sweep.objectives else None
    cost = next(
        (
            c
            for c in ("params", "macs", "latency_ms")
            if any(_is_number(t.get(c)) for t in sweep.trials)
        ),
        None,
    )
    if metric is None or cost is None:
        return None
    done = [
        t
        for t in sweep.trials
        if t.get("state") == "complete" and _is_number(t.get(metric)) and _is_number(t.get(cost))
    ]
    if not done:
        return None
    top = {c.get("number") for c in sweep.summary.get("top_k") or []}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.scatter(
        [t[cost] for t in done],
        [t[metric] for t in done],
        s=18,
        color="#4c72b0",
        alpha=0.6,
        label="candidate",
    )
    best = [t for t in done if t["number"] in top]
    ax.scatter(
        [t[cost] for t in best],
        [t[metric] for t in best],
        s=40,
        facecolors="none",
        edgecolors="#c44e52",
        linewidths=1.5,
        label="top architectures",
    )
    for t in best:
        ax.annotate(
            str(t["number"]),
            (t[cost], t[metric]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    budget = (sweep.summary.get("budget") or {}).get(f"max_{cost}")
    if _is_number(budget):
        ax.axvline(budget, color="grey", linestyle=":", label=f"budget max_{cost}")
    ax.set_xlabel(cost)
    ax.set_ylabel(metric)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    caption = f"Every trained candidate's {metric} against its {cost}; the top architectures are circled and numbered."
    return Figure(f"candidates_{slug}", "Candidates: accuracy against cost", caption, fig)


def compression_tradeoffs(run: Run, slug: str) -> Figure | None:
    """Accuracy against latency and against size, one point per compression stage."""
    stages = run.record.summary.get("compression") or []
    metric = next(
        (m for m in ("test/acc", "val/acc", "test/r2", "val/r2") if all(m in s for s in stages)),
        None,
    )
    if len(stages) < 2 or metric is None:
        return None
    panels = [
        (k, label)
        for k, label in (
            ("latency_b64_p50_ms", "latency, batch 64, median (ms)"),
            ("size_bytes", "size (KB)"),
        )
        if all(_is_number(s.get(k)) for s in stages)
    ]
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        scale = 1 / 1024 if key == "size_bytes" else 1.0
        xs = [s[key] * scale for s in stages]
        ys = [s[metric] for s in stages]
        ax.plot(xs, ys, "-", color="#bbbbbb", zorder=1)
        ax.scatter(xs, ys, s=30, color="#4c72b0", zorder=2)
        for s, x, y in zip(stages, xs, ys, strict=True):
            ax.annotate(s["stage"], (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel(metric)
    fig.tight_layout()
    caption = f"{metric} after each compression stage (baseline first, linked in order) against its latency and its file size."
    return Figure(f"tradeoffs_{slug}", f"Compression trade-offs of {run.name}", caption, fig)


def supernet_curves(run: Run, history: list[dict[str, float]], slug: str) -> Figure | None:
    """A one-shot search's supernet per epoch: its train and val metrics (the search trajectory)."""
    rows = [r for r in history if "epoch" in r]
    names = sorted(
        {k.split("/", 1)[1] for r in rows for k in r if k.startswith(("train/", "val/"))}
    )
    if not rows or not names:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for split, style in (("train", "--"), ("val", "-")):
            xs = [r["epoch"] for r in rows if f"{split}/{name}" in r]
            ys = [r[f"{split}/{name}"] for r in rows if f"{split}/{name}" in r]
            if xs:
                ax.plot(xs, ys, style, color="#4c72b0", label=split)
        ax.set_title(name)
        ax.set_xlabel("supernet epoch")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    caption = "The supernet's metrics per search epoch (val solid, train dashed), as the one-shot strategy trained it."
    return Figure(f"supernet_{slug}", f"Search trajectory of {run.name}", caption, fig)
