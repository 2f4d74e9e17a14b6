"""The tables of a report, computed from run records alone.

Every table is a :class:`Table`: named columns and rows of plain values (``None`` where a run has
no value, which the page and the Markdown show as missing, never as zero). The same tables are
written as CSV and JSON next to the report, so a reader can check any number on the page.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mlx.analysis.validation import interval_values
from mlx.report.collect import Collection, Run, Sweep

# config keys that name where a run wrote its files, or how it was launched: they differ between
# any two runs and say nothing about the experiment
_NOISE_PREFIXES = ("paths.", "hydra.", "trial.")
_NOISE_KEYS = {"trainer.default_root_dir", "tracking.save_dir", "tracking.group", "task_name"}
# metric families in the order a reader looks for them
_METRIC_ORDER = ("test/", "val/", "train/", "model/", "compressed/")


@dataclass
class Table:
    """A table of a report.

    Attributes:
        name: file stem of its CSV/JSON and the HTML id.
        title: heading shown above it.
        columns: column names, in order.
        rows: one dict per row (missing keys are missing values).
        note: a sentence shown under the table (what is missing and why, for instance).
        numeric: columns that sort as numbers.
    """

    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    note: str = ""
    numeric: set[str] = field(default_factory=set)
    collapsed: bool = False  # the page shows it folded, its title to click (long reference tables)

    def __post_init__(self) -> None:
        if not self.numeric:
            self.numeric = {
                c
                for c in self.columns
                if any(
                    isinstance(r.get(c), int | float) and not isinstance(r.get(c), bool)
                    for r in self.rows
                )
                and all(r.get(c) is None or isinstance(r.get(c), int | float) for r in self.rows)
            }

    def to_records(self) -> list[dict[str, Any]]:
        return [{c: _plain(r.get(c)) for c in self.columns} for r in self.rows]


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> ``{"a.b.c": value}``; lists become their JSON text (one comparable cell)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if value:
                flat.update(flatten(value, f"{name}."))
            else:
                flat[name] = "{}"
        elif isinstance(value, list):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def _is_noise(key: str, value: Any, run: Run) -> bool:
    if key in _NOISE_KEYS or key.startswith(_NOISE_PREFIXES) or key.endswith(".dirpath"):
        return True
    return isinstance(value, str) and str(run.record.run_dir) in value


def config_diff(runs: list[Run]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The config keys whose values differ between ``runs``, and each run's values of them.

    Returns:
        ``(keys, values)``: keys in config order; ``values[run.name][key]`` (absent where the
        run's config has no such key).
    """
    flats = {
        r.name: {k: v for k, v in flatten(r.record.config).items() if not _is_noise(k, v, r)}
        for r in runs
    }
    keys: list[str] = []
    for flat in flats.values():
        keys.extend(k for k in flat if k not in keys)
    _missing = object()
    differing = [
        k
        for k in keys
        if len({json.dumps(f.get(k, _missing), default=str) for f in flats.values()}) > 1
    ]
    return differing, {name: {k: f[k] for k in differing if k in f} for name, f in flats.items()}


def metric_names(runs: Iterable[Run]) -> list[str]:
    """The union of the runs' final metric names, test first, then val, train, model, others."""
    names: list[str] = []
    for run in runs:
        names.extend(k for k in run.record.metrics if k not in names)

    def order(name: str) -> tuple[int, str]:
        for i, prefix in enumerate(_METRIC_ORDER):
            if name.startswith(prefix):
                return i, name
        return len(_METRIC_ORDER), name

    return sorted(names, key=order)


def runs_table(collection: Collection) -> Table:
    """One row per run: status, the config keys that differ, every final metric, time, error."""
    runs = collection.runs
    keys, values = config_diff(runs)
    metrics = metric_names(runs)
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run.name, "status": run.status}
        row.update(values[run.name])
        row.update({m: run.record.metrics.get(m) for m in metrics})
        row["epochs"] = run.record.summary.get("epochs_trained")
        row["seconds"] = run.record.summary.get("wall_seconds")
        row["error"] = run.error
        rows.append(row)
    missing = [
        f"{run.name} has no {', '.join(m for m in metrics if m not in run.record.metrics)}"
        for run in runs
        if run.finished and any(m not in run.record.metrics for m in metrics)
    ]
    note = ""
    if missing:
        note = (
            "Metric sets differ (missing cells are shown as missing, not zero): "
            + "; ".join(missing)
            + "."
        )
    failed = [r for r in runs if not r.finished]
    if failed:
        note += (" " if note else "") + (
            f"{len(failed)} run(s) did not finish (failed or interrupted); their error is in the last column."
        )
    columns = ["run", "status", *keys, *metrics, "epochs", "seconds", "error"]
    if not any(r["error"] for r in rows):
        columns.remove("error")
    return Table("runs", "Runs: config differences and final metrics", columns, rows, note)


def _ci95(values: list[float]) -> float:
    from scipy import stats

    n = len(values)
    return float(stats.t.ppf(0.975, n - 1) * statistics.stdev(values) / math.sqrt(n))


def seed_table(collection: Collection) -> Table | None:
    """Mean, standard deviation and 95% confidence interval (Student's t) of each metric over the
    runs that differ only in their seed; None when no configuration ran with two seeds or more."""
    done = [r for r in collection.runs if r.status == "completed"]
    keys, values = config_diff(done)
    group_keys = [k for k in keys if k != "seed"]
    groups: dict[str, list[Run]] = {}
    for run in done:
        label = json.dumps({k: values[run.name].get(k) for k in group_keys}, default=str)
        groups.setdefault(label, []).append(run)
    # a configuration counts when it ran with two seeds or more (a sweep's trials are one each,
    # and a strategy asking the same configuration twice with one seed is a repeat, not a spread)
    spread = {k: g for k, g in groups.items() if len({str(r.seed) for r in g}) >= 2}
    if not spread:
        return None
    single = len(groups) - len(spread)
    groups = spread
    metrics = [m for m in metric_names(done) if not m.startswith("model/")]
    rows = []
    for label, members in groups.items():
        config = json.loads(label)
        configuration = ", ".join(f"{k}={v}" for k, v in config.items()) or "(same config)"
        seeds = ", ".join(str(r.seed) for r in members)
        for m in metrics:
            xs = [float(r.record.metrics[m]) for r in members if m in r.record.metrics]
            mean = statistics.fmean(xs) if xs else None
            half = _ci95(xs) if len(xs) >= 2 else None
            rows.append(
                {
                    "configuration": configuration,
                    "metric": m,
                    "runs": len(xs),
                    "seeds": seeds,
                    "mean": mean,
                    "sd": statistics.stdev(xs) if len(xs) >= 2 else None,
                    "ci95 low": mean - half if half is not None and mean is not None else None,
                    "ci95 high": mean + half if half is not None and mean is not None else None,
                    "min": min(xs) if xs else None,
                    "max": max(xs) if xs else None,
                }
            )
    columns = [
        "configuration",
        "metric",
        "runs",
        "seeds",
        "mean",
        "sd",
        "ci95 low",
        "ci95 high",
        "min",
        "max",
    ]
    skipped = len(collection.runs) - len(done)
    note = (
        "One row per configuration and metric over the runs that differ only in their seed; "
        "ci95 low/high bound the 95% confidence interval of the mean (Student's t, n-1 degrees of freedom)."
    )
    if skipped:
        note += f" {skipped} run(s) that did not complete are left out."
    if single:
        note += f" {single} configuration(s) that ran with one seed only are not shown."
    return Table("seeds", "Aggregation over seeds", columns, rows, note)


def provenance_table(collection: Collection) -> Table:
    """Per run: when, the command that reproduces it, git SHA and dirty flag, seed, host."""
    rows = []
    for run in collection.runs:
        prov = run.record.provenance
        git = prov.get("git") or {}
        sha = git.get("sha")
        rows.append(
            {
                "run": run.name,
                "started": prov.get("started"),
                "seed": run.seed,
                "git": (sha[:10] + (" (dirty)" if git.get("dirty") else ""))
                if sha
                else "not a git checkout",
                "host": prov.get("host"),
                "reproduce": prov.get("reproduce"),
            }
        )
    columns = ["run", "started", "seed", "git", "host", "reproduce"]
    return Table("provenance", "How each run was made", columns, rows, collapsed=len(rows) > 8)


def packages_table(collection: Collection) -> Table:
    """Package versions: one column when every run used the same, else one per distinct set."""
    sets: dict[str, list[str]] = {}
    for run in collection.runs:
        packages = dict(run.record.provenance.get("packages") or {})
        packages["python"] = run.record.provenance.get("python")
        sets.setdefault(json.dumps(packages, sort_keys=True), []).append(run.name)
    names: list[str] = []
    for text in sets:
        names.extend(k for k in json.loads(text) if k not in names)
    columns = ["package"]
    rows: list[dict[str, Any]] = [{"package": n} for n in names]
    for i, (text, members) in enumerate(sets.items()):
        column = "version" if len(sets) == 1 else f"set {i + 1} ({', '.join(members)})"
        columns.append(column)
        versions = json.loads(text)
        for row in rows:
            row[column] = versions.get(row["package"]) or "not installed"
    return Table("packages", "Package versions", columns, rows, numeric={"_"})


def trials_table(sweep: Sweep) -> Table:
    """A sweep's trials: state, objective value(s), parameters, cost, pruning epoch, error."""
    objectives = [o["metric"] for o in sweep.objectives]
    columns = ["number", "state", *objectives, *sweep.params]
    extra = ["params", "macs", "latency_ms", "seconds", "pruned_at_epoch", "error"]
    columns += [c for c in extra if any(t.get(c) not in (None, "") for t in sweep.trials)]
    columns = list(dict.fromkeys(columns))
    rows = [{c: _cell(t.get(c)) for c in columns} for t in sweep.trials]
    counts = sweep.summary.get("counts") or {}
    note = (
        "Trials by state: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + "."
        if counts
        else ""
    )
    return Table(f"trials_{slug(sweep.name)}", f"Trials of {sweep.name}", columns, rows, note)


def top_architectures_table(sweep: Sweep) -> Table:
    """A NAS sweep's best candidates: metric, cost, and each architecture choice."""
    metric = sweep.objectives[0]["metric"]
    top = sweep.summary.get("top_k") or []
    rows = []
    for rank, cand in enumerate(top, 1):
        arch = cand.get("arch") or {}
        rows.append(
            {
                "rank": rank,
                "trial": cand.get("number"),
                metric: cand.get(metric),
                **{k: cand.get(k) for k in ("params", "macs", "latency_ms")},
                "architecture": ", ".join(f"{k}={_short(v)}" for k, v in arch.items()),
            }
        )
    columns = ["rank", "trial", metric, "params", "macs", "latency_ms", "architecture"]
    columns = [c for c in columns if any(r.get(c) is not None for r in rows)]
    budget = sweep.summary.get("budget")
    rejected = sweep.summary.get("rejected_over_budget")
    note = ""
    if budget:
        note = f"Budget {budget}; {rejected or 0} candidate(s) rejected over it before training."
    return Table(
        f"architectures_{slug(sweep.name)}",
        f"Best architectures of {sweep.name}",
        columns,
        rows,
        note,
    )


def compression_table(run: Run) -> Table | None:
    """A run's compression stages, one row each (baseline first), as its record holds them."""
    stages = run.record.summary.get("compression")
    if not stages:
        return None
    columns: list[str] = []
    for row in stages:
        # the stage's file path and its details (layer lists, kernels) stay in metrics.json
        columns.extend(k for k in row if k not in columns and k not in ("file", "details"))
    rows = [{c: _cell(row.get(c)) for c in columns} for row in stages]
    return Table(
        f"compression_{slug(run.name)}", f"Compression stages of {run.name}", columns, rows
    )


def _cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


def _short(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def slug(text: str) -> str:
    """A file-name- and HTML-id-safe form of a run or sweep name."""
    return "".join(c if c.isalnum() else "_" for c in text).strip("_") or "x"


def verdict_table(run: Run) -> Table | None:
    """The validation gate's conditions of a run, with their values and whether each held."""
    gate = run.record.summary.get("validation")
    if not gate:
        return None
    rows = [
        {
            "condition": c.get("condition"),
            "value": c.get("value"),
            "threshold": c.get("threshold"),
            "passed": "yes" if c.get("passed") else "no",
            "note": c.get("reason") or c.get("worst_slice") or "",
        }
        for c in gate.get("conditions", [])
    ]
    failed = "; ".join(gate.get("failed") or [])
    note = f"Verdict: {gate.get('verdict')}" + (f" (failed: {failed})." if failed else ".")
    if gate.get("baseline"):
        note += f" Baseline: {gate['baseline']}."
    return Table(
        f"validation_{slug(run.name)}",
        f"Validation gate of {run.name}: {gate.get('verdict')}",
        ["condition", "value", "threshold", "passed", "note"],
        rows,
        note=note,
    )


def analysis_values_table(run: Run, name: str, section: dict[str, Any]) -> Table | None:
    """Every value with an interval in one analysis' section (``{"value", "low", "high"}``)."""
    rows = [
        {"key": key, "value": v, "low": lo, "high": hi}
        for key, (v, lo, hi) in interval_values(section).items()
    ]
    if not rows:
        return None
    return Table(
        f"analysis_{name}_{slug(run.name)}",
        f"{name} of {run.name}",
        ["key", "value", "low", "high"],
        rows,
        note="Each value with its interval (low, high) as the analysis computed it.",
    )
