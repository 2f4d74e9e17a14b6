"""``mlx report PATH... [--name NAME] [--out DIR] [--wandb MODE]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mlx.report.collect import ReportError

DESCRIPTION = """\
Build a published report from run records: index.html (one static page that opens offline),
report.md, figures/*.svg and tables/*.csv|json, in reports/NAME (replaced whole, atomically).

PATH is a run folder, a multirun or sweep folder, any folder above them, or a glob of these.
"""

WANDB_MODES = ("auto", "offline", "online", "disabled")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mlx report",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="run, multirun or sweep folders, or globs"
    )
    p.add_argument(
        "--name", help="the report's title and folder name (default: the first path's folder name)"
    )
    p.add_argument("--out", help="the report folder (default: reports/NAME)")
    p.add_argument(
        "--wandb",
        choices=WANDB_MODES,
        default="auto",
        help="log the tables and the report folder to W&B: auto (default) logs when the runs were "
        "tracked with W&B, in their mode (offline unless they were online); disabled never logs",
    )
    p.add_argument(
        "--wandb-dir", default="outputs", help="where W&B writes its files (default: outputs)"
    )
    return p


def main(argv: list[str]) -> int:
    """Entry point of ``mlx report``; returns the exit status."""
    args = parser().parse_args(argv)
    name = args.name or Path(args.paths[0].rstrip("/")).name or "report"
    if any(c in name for c in "/\\") or name in (".", ".."):
        raise ReportError(
            f"--name '{name}' must be a plain name, not a path (use --out for the folder)"
        )
    out = Path(args.out) if args.out else Path("reports") / name
    t0 = time.perf_counter()
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    from mlx.report.build import build

    try:
        with console.status("collecting records and drawing figures..."):
            report = build(args.paths, name, out, argv)
    except OSError as e:  # an --out folder that cannot be written, a record that cannot be read
        raise ReportError(
            f"{e.strerror or e}: {e.filename or out} (building the report in {out})."
        ) from None
    runs = report.collection.runs
    console.print(
        f"[green]report[/green] {name}: {len(runs)} run(s), {len(report.collection.sweeps)} sweep(s), "
        f"{len(report.tables)} tables, {len(report.figures)} figures in {time.perf_counter() - t0:.1f} s"
    )
    print(f"{out.resolve() / 'index.html'}")
    print(f"{out.resolve() / 'report.md'}")
    from mlx.report.tracking import log_report, wandb_mode

    mode = wandb_mode(args.wandb, runs)
    if mode != "disabled":
        try:
            where = log_report(report, out, mode=mode, wandb_dir=Path(args.wandb_dir))
        except Exception as e:  # the report is written; say so, and that W&B did not get it
            console.print(
                f"[yellow]W&B logging failed ({type(e).__name__}: {e}); the report folder is complete[/yellow]"
            )
            return 1
        console.print(f"W&B ({mode}): {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
