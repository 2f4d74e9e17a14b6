"""What a sweep leaves besides its ledger: ``trials.csv``, ``sweep.json``, a results table and
the best configuration as an experiment file. ``mlx sweep status DIR`` reads them back."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlx.errors import MlxError
from mlx.numbers import fmt
from mlx.record import write_json, write_text

FORMAT = "mlx.sweep"
VERSION = 1
TRIALS_FILE = "trials.csv"
SUMMARY_FILE = "sweep.json"


# a candidate's cost, when the sweep measured it (NAS sweeps) or its run record holds it
COST_COLUMNS = ("params", "macs", "latency_ms")
# the best candidates listed in a NAS sweep's sweep.json
TOP_K = 5


def _seconds(t: Any) -> float | None:
    if t.datetime_start and t.datetime_complete:
        return round((t.datetime_complete - t.datetime_start).total_seconds(), 3)
    return None


def best_trials(study: Any, plan: Any) -> list[Any]:
    from optuna.trial import TrialState

    if not any(t.state == TrialState.COMPLETE for t in study.trials):
        return []
    return [study.best_trial] if len(plan.objectives) == 1 else list(study.best_trials)


def trial_rows(study: Any, plan: Any) -> list[dict[str, Any]]:
    rows = []
    for t in study.trials:
        state = "rejected" if t.user_attrs.get("rejected") else t.state.name.lower()
        row: dict[str, Any] = {"number": t.number, "state": state}
        for i, o in enumerate(plan.objectives):
            row[o.metric] = t.values[i] if t.values and t.state.name == "COMPLETE" else None
        row["seconds"] = _seconds(t)
        for name, value in plan.space.from_optuna_params(t.params).items():
            row[name] = value
        for key in COST_COLUMNS:
            row[key] = t.user_attrs.get(key)
        row["pruned_at_epoch"] = t.user_attrs.get("pruned_at_epoch")
        row["error"] = t.user_attrs.get("error")
        row["output_dir"] = t.user_attrs.get("output_dir")
        rows.append(row)
    return rows


def write_results(study: Any, plan: Any, n_trials: int, stop_reason: str | None = None) -> None:
    """Rewrite ``trials.csv`` and ``sweep.json`` (atomically) from the ledger."""
    rows = trial_rows(study, plan)
    columns = (
        ["number", "state"]
        + [o.metric for o in plan.objectives]
        + ["seconds"]
        + plan.space.names
        + [k for k in COST_COLUMNS if any(row.get(k) is not None for row in rows)]
        + ["pruned_at_epoch", "error", "output_dir"]
    )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    write_text(plan.sweep_dir / TRIALS_FILE, buf.getvalue())
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    best = [
        {
            "number": t.number,
            "values": dict(zip([o.metric for o in plan.objectives], t.values, strict=True)),
            "params": plan.space.from_optuna_params(t.params),
            "output_dir": t.user_attrs.get("output_dir"),
        }
        for t in best_trials(study, plan)
    ]
    write_json(
        plan.sweep_dir / SUMMARY_FILE,
        {
            "format": FORMAT,
            "version": VERSION,
            "name": plan.name,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "n_trials": n_trials,
            "counts": counts,
            "stopped": stop_reason,
            "objectives": [{"metric": o.metric, "mode": o.mode} for o in plan.objectives],
            "strategy": plan.strategy_cfg,
            "estimation": plan.estimation_cfg,
            "search_space": plan.space.describe(),
            "fixed_overrides": plan.base + plan.fidelity,
            "best": best,
            **(top_architectures(study, plan) if getattr(plan, "nas", None) is not None else {}),
        },
    )


def top_architectures(study: Any, plan: Any) -> dict[str, Any]:
    """A NAS sweep's top-k candidates (architecture, metric, cost) and its rejection count."""
    from optuna.trial import TrialState

    from mlx.nas.search import arch_of

    o = plan.objectives[0]
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    done.sort(key=lambda t: t.values[0], reverse=o.mode == "max")
    return {
        "rejected_over_budget": sum(1 for t in study.trials if t.user_attrs.get("rejected")),
        "budget": plan.fingerprint.get("budget"),
        "top_k": [
            {
                "number": t.number,
                o.metric: t.values[0],
                "arch": arch_of(plan.space.from_optuna_params(t.params)),
                **{k: t.user_attrs[k] for k in COST_COLUMNS if k in t.user_attrs},
                "seconds": _seconds(t),
                "output_dir": t.user_attrs.get("output_dir"),
            }
            for t in done[:TOP_K]
        ],
    }


def _cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value)
    return "" if value is None else value


def print_results(study: Any, plan: Any) -> None:
    rows = trial_rows(study, plan)
    best = {t.number for t in best_trials(study, plan)}
    costs = [k for k in COST_COLUMNS if any(row.get(k) is not None for row in rows)]
    # a NAS sweep's architectures are dozens of choices: the table shows their cost, and
    # trials.csv and sweep.json (top_k) hold the choices
    shown = costs if plan.nas is not None else plan.space.names + costs
    print_table(rows, [o.metric for o in plan.objectives], shown, best, plan.name)


def print_table(
    rows: list[dict[str, Any]], metrics: list[str], params: list[str], best: set[int], title: str
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sweep {title}: {len(rows)} trial(s)")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for m in metrics:
        table.add_column(m, justify="right", no_wrap=True)
    table.add_column("s", justify="right", no_wrap=True)
    for header in short_names(params):
        table.add_column(header, no_wrap=True)
    for row in rows:
        style = "bold green" if row["number"] in best else None
        cells = [str(row["number"]) + (" *" if row["number"] in best else ""), row["state"]]
        cells += [_fmt(row.get(m)) for m in metrics]
        cells.append(_fmt(row.get("seconds"), 1))
        cells += [_fmt(row.get(p)) for p in params]
        table.add_row(*cells, style=style)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 200))  # a log file: do not fold the table
    console.print(table)
    if best:
        kind = "best trial" if len(metrics) == 1 else "Pareto front"
        console.print(f"{kind} (*): {', '.join(str(b) for b in sorted(best))}")


def short_names(names: list[str]) -> list[str]:
    """The shortest dotted suffix of each name that is still unique (``model.net.hidden`` ->
    ``hidden``), to keep the table narrow."""
    out = []
    for name in names:
        parts = name.lstrip("+").removesuffix("._target_").split(".")
        for i in range(len(parts) - 1, -1, -1):
            short = ".".join(parts[i:])
            if sum(n.lstrip("+").removesuffix("._target_").endswith(short) for n in names) == 1:
                break
        out.append(short.strip("_") or name)
    return out


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return fmt(value) if digits != 1 else f"{value:.1f}"
    if isinstance(value, str) and value.count(".") >= 2 and " " not in value:
        return value.rpartition(".")[2]  # a dotted class path: its class name
    return str(value)


# ---- the best configuration as an experiment --------------------------------------------------


def export_best(
    study: Any, plan: Any, export_dir: str | None, choices: dict[str, str] | None = None
) -> list[Path]:
    """Write each best trial as ``<sweep>_best.yaml`` (``_pareto_<n>`` with several objectives),
    in ``export_dir`` or the project's ``experiments/``."""
    from mlx.config.experiment_file import write_experiment
    from mlx.sweep.space import override_value

    trials = best_trials(study, plan)
    if not trials:
        return []
    if plan.nas is not None:
        return [export_best_architecture(trials[0], plan, export_dir, choices)]
    written = []
    for t in trials:
        values = plan.space.from_optuna_params(t.params)
        overrides = [
            *plan.base,
            *plan.fidelity,
            *(f"{k}={override_value(v)}" for k, v in values.items()),
        ]
        scores = ", ".join(
            f"{o.metric}={v:.4g}" for o, v in zip(plan.objectives, t.values, strict=True)
        )
        header = (
            f"# trial {t.number} of sweep {plan.name} ({scores}); written by the mlx sweeper\n"
            f"# from {plan.sweep_dir}. Reproduce: mlx run experiment=STEM\n"
        )
        stem = f"{plan.name}_best" if len(trials) == 1 else f"{plan.name}_pareto_{t.number}"
        written.append(write_experiment(stem, overrides, header, choices, export_dir))
    return written


def export_best_architecture(
    trial: Any, plan: Any, export_dir: str | None, choices: dict[str, str] | None
) -> Path:
    """A NAS sweep's best candidate as ``nas_<name>.yaml``: the architecture at full
    fidelity (the estimation's lower-fidelity settings are left out), ready to retrain."""
    from mlx.nas.search import arch_of, export_experiment
    from mlx.sweep.space import override_value

    values = plan.space.from_optuna_params(trial.params)
    arch = arch_of(values)
    others = [
        f"{k.lstrip('+')}={override_value(v)}"
        for k, v in values.items()
        if k.lstrip("+") not in {f"model.net.arch.{a}" for a in arch}
    ]
    o = plan.objectives[0]
    cost = ", ".join(
        f"{trial.user_attrs[k]:,} {k}" for k in ("params", "macs") if k in trial.user_attrs
    )
    header = (
        f"# the best architecture of NAS sweep {plan.name}: candidate {trial.number}, {o.metric}="
        f"{trial.values[0]:.4g}{', ' + cost if cost else ''}; written by the mlx sweeper from\n"
        f"# {plan.sweep_dir}. It retrains from scratch at full fidelity: mlx run experiment=STEM\n"
    )
    return export_experiment(
        f"nas_{plan.name}",
        plan.nas.space_cfg,
        arch,
        [*plan.base, *others],
        header,
        choices,
        export_dir,
    )


# ---- mlx sweep status -----------------------------------------------------------------------


class SweepStatusError(MlxError):
    pass


def status(sweep_dir: str | Path) -> dict[str, Any]:
    """Print the trials table of a sweep folder (running or finished); returns its summary."""
    sweep_dir = Path(sweep_dir)
    summary_path = sweep_dir / SUMMARY_FILE
    if not summary_path.is_file():
        raise SweepStatusError(
            f"{sweep_dir} is not an mlx sweep folder ({SUMMARY_FILE} is missing); a sweep writes it after its first trial."
        )
    summary = json.loads(summary_path.read_text())
    if summary.get("format") != FORMAT or summary.get("version") != VERSION:
        raise SweepStatusError(f"{summary_path} is not an mlx sweep summary of version {VERSION}.")
    with (sweep_dir / TRIALS_FILE).open() as f:
        rows: list[dict[str, Any]] = []
        for row in csv.DictReader(f):
            parsed: dict[str, Any] = {}
            for k, v in row.items():
                parsed[k] = _parse(v)
            rows.append(parsed)
    metrics = [o["metric"] for o in summary["objectives"]]
    params = [] if "top_k" in summary else list(summary["search_space"])
    params += [k for k in COST_COLUMNS if any(row.get(k) not in (None, "") for row in rows)]
    best = {b["number"] for b in summary.get("best", [])}
    print_table(rows, metrics, params, best, summary["name"])
    counts = ", ".join(f"{v} {k}" for k, v in summary["counts"].items())
    from rich.console import Console

    Console().print(
        f"{counts} of n_trials {summary['n_trials']}"
        + (f"; stopped: {summary['stopped']}" if summary.get("stopped") else "")
    )
    return summary


def _parse(v: str) -> Any:
    if v == "":
        return None
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v
