"""Mirror a report in W&B: its tables as ``wandb.Table`` and its folder as an artifact.

The report's W&B run joins the runs' group (a sweep's runs share one), so the comparison sits
next to the runs it compares. Offline mode needs no account or network; ``wandb sync`` uploads
the run later.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlx.report.collect import Run

if TYPE_CHECKING:
    from mlx.report.build import Report


def _tracking(run: Run) -> dict[str, Any]:
    tracking = run.record.config.get("tracking")
    return tracking if isinstance(tracking, dict) else {}


def _uses_wandb(run: Run) -> bool:
    return "Wandb" in str(_tracking(run).get("_target_", ""))


def wandb_mode(requested: str, runs: list[Run]) -> str:
    """The W&B mode to log a report in: ``auto`` follows the runs (offline unless every W&B run
    was online; disabled when none used W&B)."""
    if requested != "auto":
        return requested
    tracked = [r for r in runs if _uses_wandb(r)]
    if not tracked:
        return "disabled"
    return "online" if all(_tracking(r).get("mode") == "online" for r in tracked) else "offline"


def _group_and_project(runs: list[Run]) -> tuple[str | None, str]:
    groups = {_tracking(r).get("group") for r in runs if _uses_wandb(r)} - {None, ""}
    projects = {_tracking(r).get("project") for r in runs if _uses_wandb(r)} - {None, ""}
    group = next(iter(groups)) if len(groups) == 1 else None
    project = next(iter(projects)) if len(projects) == 1 else "mlx"
    return group, project


def log_report(report: Report, folder: Path, *, mode: str, wandb_dir: Path) -> str:
    """Log ``report``'s tables and ``folder`` to a new W&B run; returns the run's folder or URL."""
    import wandb

    group, project = _group_and_project(report.collection.runs)
    if group is None and len(report.collection.sweeps) == 1:
        group = report.collection.sweeps[0].path.name  # what the sweep's runs were grouped by
    wandb_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=project,
        group=group,
        job_type="report",
        name=f"report-{report.name}",
        mode=mode,
        dir=str(wandb_dir),
        config={
            "report": report.name,
            "runs": [str(r.record.run_dir) for r in report.collection.runs],
        },
        reinit="create_new",
        settings=wandb.Settings(silent=True),
    )
    try:
        tables = {}
        for table in report.tables:
            records = table.to_records()
            text = {c for c in table.columns if not _one_type([r.get(c) for r in records])}
            rows = [[_value(r.get(c), c in text) for c in table.columns] for r in records]
            tables[f"report/{table.name}"] = wandb.Table(columns=table.columns, data=rows)
        run.log(tables)  # one step: the tables belong together
        artifact = wandb.Artifact(
            f"report-{_safe(report.name)}", type="report", description=report.command
        )
        artifact.add_dir(str(folder))
        run.log_artifact(artifact)
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish()
    if mode == "offline":
        where = Path(run.dir).parent
        return f"{where} (upload later: wandb sync {where})"
    return str(run.url)


def _one_type(values: list[Any]) -> bool:
    """Whether a column's cells are all numbers, all text or all flags (None aside)."""
    kinds = {
        "flag" if isinstance(v, bool) else "number" if isinstance(v, int | float) else "text"
        for v in values
        if v is not None
    }
    return len(kinds) <= 1


def _value(value: Any, as_text: bool) -> Any:
    # a W&B table column holds one type: a column mixing numbers and text is all text
    if value is None:
        return None
    if as_text or not isinstance(value, int | float | str | bool):
        return str(value)
    return value


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
