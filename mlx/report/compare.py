"""``mlx compare A B [C...]``: a quick terminal comparison of runs, read from their run records.

The first run found is the baseline. The comparison prints, in order: the runs (name, status,
epochs, wall time, folder, and the error of a run that did not finish); one row per final metric
with each run's value and, for every other run, its difference to the baseline, green when better
and red when worse; the analyses' values with their intervals and the validation verdict, when
the runs have them; and the config keys whose values differ (output paths aside). A missing value
is shown as "—", never as zero. Nothing is written.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
from typing import TYPE_CHECKING, Any

from mlx.analysis.validation import interval_values
from mlx.numbers import MISSING, fmt
from mlx.report.collect import ReportError, Run, collect
from mlx.report.tables import config_diff, metric_names

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


# words of a metric's name that say which way is better; a name with words of both kinds, or
# of neither, is neutral (its difference is shown uncoloured)
_HIGHER = {
    "acc", "accuracy", "top1", "top5", "r2", "f1", "auc", "auroc", "auprc", "ap", "map",
    "precision", "recall", "iou", "miou", "dice", "bleu", "rouge", "kappa", "mcc", "sparsity",
    "reduction", "speedup", "throughput",
}  # fmt: skip
_LOWER = {
    "loss", "nll", "mae", "mse", "rmse", "mape", "error", "err", "ppl", "perplexity", "params",
    "macs", "flops", "latency", "size", "bytes", "seconds", "ms", "time", "memory",
}  # fmt: skip

_STATUS_STYLE = {
    "completed": "green",
    "pruned": "yellow",
    "failed": "bold red",
    "interrupted": "red",
}


def direction(metric: str) -> int:
    """+1 when a higher value of ``metric`` is better, -1 when lower is, 0 when unknown.

    Judged from the words of the name's last part: ``val/acc`` and ``test/f1_macro`` are higher
    is better, ``val/loss``, ``model/params`` and ``compressed/latency_b1_p50_ms`` lower.
    """
    words = set(re.split(r"[^a-z0-9]+", metric.lower().rpartition("/")[2]))
    higher, lower = bool(words & _HIGHER), bool(words & _LOWER)
    return 0 if higher == lower else (1 if higher else -1)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _config_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _delta_cell(metric: str, value: Any, base: Any) -> Text:
    from rich.text import Text

    cell = Text(fmt(value))
    x, b = _number(value), _number(base)
    if x is None or b is None or not (math.isfinite(x) and math.isfinite(b)):
        return cell
    delta: int | float = value - base if isinstance(value, int) and isinstance(base, int) else x - b
    better = direction(metric) * (delta > 0) - direction(metric) * (delta < 0)
    style = {1: "green", -1: "red"}.get(better, "")
    cell.append(f" ({fmt(delta, sign=True)})", style=style)
    return cell


def choose_metrics(runs: list[Run], wanted: list[str] | None) -> list[str]:
    """Every run's metrics (union, test first), or only ``wanted``, in the order given.

    Raises:
        ReportError: a name in ``wanted`` that no run has (with the closest match).
    """
    known = metric_names(runs)
    if not wanted:
        return known
    for name in wanted:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else "."
            raise ReportError(
                f"no run has a metric '{name}'{hint} The runs' metrics: {', '.join(known) or 'none'}"
            )
    return list(dict.fromkeys(wanted))


def _runs_table(runs: list[Run]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False)
    table.add_column("run", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("epochs", justify="right", no_wrap=True)
    table.add_column("seconds", justify="right", no_wrap=True)
    table.add_column("folder", overflow="fold")
    for i, run in enumerate(runs):
        summary = run.record.summary
        seconds = summary.get("wall_seconds")
        table.add_row(
            run.name + (" (baseline)" if i == 0 else ""),
            Text(run.status, style=_STATUS_STYLE.get(run.status, "")),
            fmt(summary.get("epochs_trained")),
            MISSING if seconds is None else f"{seconds:.1f}",
            str(run.record.run_dir),
        )
    return table


def _metrics_table(runs: list[Run], metrics: list[str]) -> Any:
    from rich.table import Table

    base = runs[0]
    table = Table()
    table.add_column("metric", no_wrap=True)
    for run in runs:
        table.add_column(run.name, justify="right", no_wrap=True)
    for m in metrics:
        cells: list[Any] = [fmt(base.record.metrics.get(m))]
        cells += [
            _delta_cell(m, run.record.metrics.get(m), base.record.metrics.get(m))
            for run in runs[1:]
        ]
        table.add_row(m, *cells)
    return table


def _analysis_table(runs: list[Run]) -> Any | None:
    """The analyses' values with intervals and the validation verdict, one row each."""
    from rich.table import Table
    from rich.text import Text

    values = [interval_values(run.record.summary.get("analysis") or {}) for run in runs]
    keys = list(dict.fromkeys(k for v in values for k in v))
    # the slices' overall values repeat the metrics analysis' when both ran
    keys = [
        k
        for k in keys
        if not (
            k.startswith("slices.overall.")
            and all(f"metrics.{k.removeprefix('slices.overall.')}" in v for v in values)
        )
    ]
    verdicts = [(run.record.summary.get("validation") or {}).get("verdict") for run in runs]
    if not keys and not any(verdicts):
        return None
    table = Table()
    table.add_column("analysis", no_wrap=True)
    for run in runs:
        table.add_column(run.name, justify="right", no_wrap=True)
    base = values[0]
    for key in keys:
        cells: list[Any] = []
        for i, own in enumerate(values):
            if key not in own:
                cells.append(MISSING)
                continue
            value, low, high = own[key]
            cell = _delta_cell(key, value, base[key][0]) if i and key in base else Text(fmt(value))
            cell.append(f" [{fmt(low)}, {fmt(high)}]", style="dim")
            cells.append(cell)
        table.add_row(key, *cells)
    if any(verdicts):
        table.add_row("validation", *[v or MISSING for v in verdicts])
    return table


def _config_table(runs: list[Run]) -> Any | None:
    from rich.table import Table

    keys, values = config_diff(runs)
    if not keys:
        return None
    table = Table()
    table.add_column("key", no_wrap=True)
    for run in runs:
        table.add_column(run.name, overflow="fold")
    for key in keys:
        cells = [
            _config_value(values[run.name][key]) if key in values[run.name] else MISSING
            for run in runs
        ]
        table.add_row(key, *cells)
    return table


def compare(
    paths: list[str], *, console: Console | None = None, metrics: list[str] | None = None
) -> None:
    """Print a comparison of the runs under ``paths``; the first run found is the baseline.

    Args:
        paths: run folders, multirun or sweep folders, folders above them, or globs of these;
            together they must hold at least two runs.
        console: where to print (default: standard output, 200 columns wide when it is not a
            terminal, so that a log file gets whole tables).
        metrics: the metrics to show, in this order (default: every run's final metrics).

    Raises:
        ReportError: a path with no run records, fewer than two runs in all, or a metric name
            that no run has.
    """
    from rich.console import Console
    from rich.markup import escape

    runs = collect(paths).runs
    if len(runs) < 2:
        found = ", ".join(f"{r.name} ({r.record.run_dir})" for r in runs)
        raise ReportError(
            f"mlx compare needs at least two runs, but {' '.join(paths)} holds {len(runs)}: "
            f"{found}; give two run folders, or a multirun or sweep folder"
        )
    shown = choose_metrics(runs, metrics)
    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal:
            console = Console(highlight=False, width=max(console.width, 200))

    names = ", ".join(r.name for r in runs[1:])
    console.print(
        f"[bold]Comparing {len(runs)} runs[/bold]: baseline {escape(runs[0].name)}, "
        f"against {escape(names)}",
        highlight=False,
    )
    console.print(_runs_table(runs), highlight=False)
    for run in runs:
        if not run.finished:
            error = run.error or "no metrics.json: the run was killed before it ended"
            console.print(
                f"[bold red]{escape(run.name)} {escape(run.status)}:[/bold red] {escape(error)}",
                highlight=False,
            )
    console.print()
    if shown:
        console.print(
            f"[bold]Metrics[/bold] (difference to the baseline {escape(runs[0].name)}: "
            "[green]green[/green] better, [red]red[/red] worse)",
            highlight=False,
        )
        console.print(_metrics_table(runs, shown), highlight=False)
    else:
        console.print("No run has final metrics.")
    console.print()
    analysis = _analysis_table(runs)
    if analysis is not None:
        console.print(
            "[bold]Analysis[/bold] (value \\[interval]; difference to the baseline)",
            highlight=False,
        )
        console.print(analysis, highlight=False)
        console.print()
    config = _config_table(runs)
    if config is None:
        console.print("The configs are identical (output paths aside).")
    else:
        console.print("[bold]Config differences[/bold] (output paths aside)", highlight=False)
        console.print(config, highlight=False)


def main(argv: list[str]) -> int:
    """``mlx compare PATH [PATH...] [--metric NAME ...]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="mlx compare",
        description=(
            "Compare runs in the terminal: final metrics with their difference to the first run "
            "(the baseline), the config keys that differ, and each run's status."
        ),
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="run folders, or multirun/sweep folders holding several runs (two runs at least)",
    )
    parser.add_argument(
        "--metric",
        dest="metrics",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="show only these metrics, in this order (e.g. --metric test/acc val/loss)",
    )
    args = parser.parse_args(argv)
    compare(args.paths, metrics=args.metrics)
    return 0
