"""Build a report: collect the records, compute its sections, write the folder in one step.

The folder holds ``index.html`` (one static page: styles and its small sorting script inline,
figures next to it, nothing fetched from the network), ``report.md`` (the same content for a
repository or a paper appendix), ``figures/*.svg``, ``tables/*.csv`` and ``tables/*.json``. It is
written into a temporary folder beside the target and renamed into place, so a failure leaves
the previous report (or nothing), never half a folder.
"""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlx.nas.search import SEARCH_RECORD
from mlx.report import figures as F
from mlx.report import tables as T
from mlx.report.collect import Collection, ReportError, Run, Sweep, collect
from mlx.report.render import fmt

FORMAT = "mlx.report"
VERSION = 1


@dataclass
class Section:
    """A part of the report: paragraphs, tables and figures, in that order of ``items``."""

    id: str
    title: str
    items: list[str | T.Table | F.Figure] = field(default_factory=list)


@dataclass
class Report:
    """What a report holds before it is rendered."""

    name: str
    command: str
    generated: str
    collection: Collection
    sections: list[Section]

    @property
    def tables(self) -> list[T.Table]:
        return [i for s in self.sections for i in s.items if isinstance(i, T.Table)]

    @property
    def figures(self) -> list[F.Figure]:
        return [i for s in self.sections for i in s.items if isinstance(i, F.Figure)]


def _objective(runs: list[Run]) -> tuple[str, str] | None:
    for run in runs:
        obj = run.record.summary.get("objective") or {}
        if obj.get("metric"):
            return obj["metric"], obj.get("mode", "max")
    return None


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (published reports then
    name ``outputs/...`` rather than one machine's absolute folders)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def regenerate_command(collection: Collection, report_args: list[str]) -> str:
    """The one command that makes these runs and this report again, when the runs came from one
    command line; else the report command alone (each run's own command is in the summary)."""
    report = shlex.join(["mlx", "report", *report_args])
    lines = {r.record.provenance.get("command_line") for r in collection.runs}
    if len(lines) == 1:
        (line,) = lines
        if (
            line
            and line.split()[:2] != ["mlx", "report"]
            and len(line.split()) > 1
            and line.split()[1] in ("run", "sweep", "nas", "compress", "eval")
        ):
            return f"{line} && {report}"
    return report


def summary_section(collection: Collection) -> Section:
    runs = collection.runs
    statuses = Counter(r.status for r in runs)
    started = sorted(p for r in runs if (p := r.record.provenance.get("started")))
    finished = sorted(f for r in runs if (f := r.record.summary.get("finished")))
    what = []
    for run in runs:
        data = (run.record.summary.get("data") or {}).get("source") or _target(
            run.record.config.get("data")
        )
        model = _target((run.record.config.get("model") or {}).get("net")) or _target(
            run.record.config.get("model")
        )
        what.append(f"{model or 'a model'} on {data or 'data'}")
    kinds = Counter(what)
    shas = {
        (
            (r.record.provenance.get("git") or {}).get("sha"),
            (r.record.provenance.get("git") or {}).get("dirty"),
        )
        for r in runs
    }
    text = [
        f"{len(runs)} run(s): " + ", ".join(f"{n} {s}" for s, n in statuses.items()) + ".",
        "What was trained: "
        + "; ".join(f"{k} ({n} run{'s' if n > 1 else ''})" for k, n in kinds.items())
        + ".",
    ]
    if started:
        text.append(
            f"Started {started[0]}" + (f", last finished {finished[-1]}." if finished else ".")
        )
    if collection.sweeps:
        text.append(
            "Sweeps: "
            + ", ".join(f"`{s.name}` ({len(s.trials)} trials)" for s in collection.sweeps)
            + "."
        )
    if len(shas) == 1:
        sha, dirty = next(iter(shas))
        text.append(
            f"Code: git `{sha[:10]}`"
            + (" with uncommitted changes (dirty)." if dirty else ", clean.")
            if sha
            else "Code: not in a git checkout."
        )
    else:
        text.append(f"Code: {len(shas)} different git states; see the table.")
    seeds = sorted({str(r.seed) for r in runs})
    text.append("Seeds: " + ", ".join(seeds) + ".")
    return Section(
        "summary",
        "Summary",
        [*text, T.provenance_table(collection), T.packages_table(collection)],
    )


def _target(node: Any) -> str | None:
    if isinstance(node, dict) and isinstance(node.get("_target_"), str):
        return node["_target_"].rsplit(".", 1)[-1]
    return None


def runs_section(collection: Collection) -> Section:
    items: list[Any] = [
        "Only the config keys that differ between runs are shown; click a column heading to sort by it."
    ]
    items.append(T.runs_table(collection))
    return Section("runs", "Runs", items)


def curves_section(collection: Collection) -> Section | None:
    fig = F.learning_curves(collection.runs, _objective(collection.runs))
    return Section("curves", "Learning curves", [fig]) if fig else None


def seeds_section(collection: Collection) -> Section | None:
    table = T.seed_table(collection)
    return Section("seeds", "Aggregation over seeds", [table]) if table else None


def param_importance(sweep: Sweep) -> tuple[dict[str, float], str]:
    """fANOVA importance of each parameter for the sweep's first objective, from its ledger.

    The ledger is copied first: reading it through Optuna must never change a sweep's file.

    Returns:
        ``(importances, note)``: importances sum to 1, empty with a note saying why when they
        cannot be computed.
    """
    if sweep.ledger is None:
        return {}, "No ledger (sweep.db) in the sweep folder: importance needs it."
    done = [t for t in sweep.trials if t.get("state") == "complete"]
    if len(done) < 4:
        return {}, f"Importance needs at least 4 completed trials; this sweep has {len(done)}."
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "ledger.db"
        shutil.copyfile(sweep.ledger, copy)
        storage = optuna.storages.RDBStorage(f"sqlite:///{copy}")
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        name = sweep.name if sweep.name in names else names[0]
        study = optuna.load_study(study_name=name, storage=storage)
        try:
            values = get_param_importances(
                study,
                evaluator=FanovaImportanceEvaluator(seed=0),
                target=lambda t: t.values[0],
            )
        except (RuntimeError, ValueError) as e:
            return {}, f"fANOVA could not be computed: {e}"
        finally:
            storage.engine.dispose()  # type: ignore[attr-defined]
    if not values:
        return {}, "No parameter varied over the completed trials."
    return {k: float(v) for k, v in values.items()}, ""


def sweep_section(sweep: Sweep) -> Section:
    slug = T.slug(sweep.name)
    counts = sweep.summary.get("counts") or {}
    objectives = ", ".join(f"{o['metric']} ({o['mode']})" for o in sweep.objectives)
    strategy = (sweep.summary.get("strategy") or {}).get("_target_", "?")
    items: list[Any] = [
        f"Folder `{display_path(sweep.path)}`. Objective(s): {objectives}. Strategy `{strategy}`; "
        f"{len(sweep.trials)} of {sweep.summary.get('n_trials')} trials asked"
        + (f", stopped: {sweep.summary['stopped']}" if sweep.summary.get("stopped") else "")
        + ". "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + "."
    ]
    best = sweep.summary.get("best") or []
    if best and len(sweep.objectives) == 1:
        b = best[0]
        params = ", ".join(f"{k}={v}" for k, v in (b.get("params") or {}).items())
        value = next(iter((b.get("values") or {}).values()), None)
        items.append(
            f"Best trial: {b['number']} with {sweep.objectives[0]['metric']} = {fmt(value)} ({params})."
        )
    for fig in (F.best_so_far(sweep, slug), F.pareto(sweep, slug)):
        if fig:
            items.append(fig)
    if not sweep.is_nas:
        par = F.parallel_coordinates(sweep, slug)
        if par:
            items.append(par)
        values, note = param_importance(sweep)
        fig = F.importance(sweep, slug, values)
        if fig:
            items.append(fig)
            items.append(
                T.Table(
                    f"importance_{slug}",
                    "Hyperparameter importance (fANOVA)",
                    ["parameter", "importance"],
                    [{"parameter": k, "importance": v} for k, v in values.items()],
                )
            )
        else:
            items.append(f"Hyperparameter importance: {note}")
    else:
        cand = F.metric_vs_cost(sweep, slug)
        if cand:
            items.append(cand)
        items.append(T.top_architectures_table(sweep))
    items.append(T.trials_table(sweep))
    kind = "NAS search" if sweep.is_nas else "Sweep"
    return Section(f"sweep_{slug}", f"{kind} {sweep.name}", items)


def nas_runs_section(collection: Collection) -> Section | None:
    """One-shot searches (a run folder with ``search.json``): the supernet's trajectory per epoch
    and the architecture it chose."""
    items: list[Any] = []
    for run in collection.runs:
        path = run.record.run_dir / SEARCH_RECORD
        if not path.is_file():
            continue
        try:
            search = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ReportError(f"{path} is not valid JSON ({e})") from e
        (found, *_) = search.get("candidates") or [{}]
        cost = ", ".join(
            f"{k} {fmt(found[k])}" for k in ("params", "macs", "latency_ms") if k in found
        )
        items.append(
            f"{run.name}: one-shot `{search.get('strategy')}` over `{search.get('search_space')}` "
            f"in {fmt(found.get('seconds'))} s; the supernet's final validation metric "
            f"{fmt(found.get('metric'))}; the architecture found: {cost}. Retrain it with "
            f"`mlx run experiment={Path(str(search.get('experiment', ''))).stem}`."
        )
        fig = F.supernet_curves(run, search.get("supernet_history") or [], T.slug(run.name))
        if fig:
            items.append(fig)
        arch = found.get("arch") or {}
        rows = [
            {"choice": k, "value": json.dumps(v) if isinstance(v, list | dict) else v}
            for k, v in arch.items()
        ]
        items.append(
            T.Table(
                f"arch_{T.slug(run.name)}",
                f"Architecture found by {run.name}",
                ["choice", "value"],
                rows,
            )
        )
    return Section("nas", "One-shot architecture search", items) if items else None


def compression_section(collection: Collection) -> Section | None:
    items: list[Any] = []
    for run in collection.runs:
        table = T.compression_table(run)
        if table is None:
            continue
        items.append(table)
        fig = F.compression_tradeoffs(run, T.slug(run.name))
        if fig:
            items.append(fig)
    return Section("compression", "Compression", items) if items else None


def analysis_section(collection: Collection) -> Section | None:
    """Each run's verdict, failed analyses, values with intervals and the analyses' figures."""
    items: list[Any] = []
    for run in collection.runs:
        summary = run.record.summary
        analysis = summary.get("analysis")
        if not analysis and not summary.get("validation"):
            continue
        verdict = T.verdict_table(run)
        if verdict:
            items.append(verdict)
        for where, why in (summary.get("analysis_failed") or {}).items():
            items.append(f"{run.name}: the analysis {where} failed: {why}")
        per_network = analysis if summary.get("analysis_networks") else None
        sections = per_network or {"": analysis or {}}
        for label, own in sections.items():
            for name, section in (own or {}).items():
                if not isinstance(section, dict):
                    continue
                table = T.analysis_values_table(run, f"{label}_{name}" if label else name, section)
                if table:
                    items.append(table)
        for svg in sorted((run.record.run_dir / "analysis").rglob("*.svg")):
            rel = svg.relative_to(run.record.run_dir / "analysis")
            stem = T.slug(f"{run.name}_{rel.with_suffix('')}")
            captions = _captions(analysis, rel)
            items.append(
                F.Figure(
                    f"analysis_{stem}",
                    f"{run.name}: {' / '.join(rel.with_suffix('').parts)}",
                    captions
                    or f"Drawn by the analysis {rel.parts[-2] if len(rel.parts) > 1 else ''}.",
                    svg,
                )
            )
    return Section("analysis", "Analysis", items) if items else None


def _captions(analysis: Any, rel: Path) -> str:
    """The caption an analysis gave a figure (its section's ``figures``: file name -> text)."""
    node = analysis or {}
    for part in rel.parts[:-1]:
        node = node.get(part, {}) if isinstance(node, dict) else {}
    figures = node.get("figures") if isinstance(node, dict) else None
    return str(figures.get(rel.name, "")) if isinstance(figures, dict) else ""


def make_report(collection: Collection, name: str, command: str) -> Report:
    """Compute every section the collection's records support."""
    sections = [summary_section(collection), runs_section(collection)]
    for maker in (seeds_section, curves_section):
        section = maker(collection)
        if section:
            sections.append(section)
    sections.extend(sweep_section(s) for s in collection.sweeps)
    for maker in (nas_runs_section, compression_section, analysis_section):
        section = maker(collection)
        if section:
            sections.append(section)
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return Report(
        name=name, command=command, generated=generated, collection=collection, sections=sections
    )


def write_report(report: Report, out: Path) -> Path:
    """Render ``report`` into ``out`` (replaced whole, atomically); returns ``out``."""
    from mlx.report.render import render_html, render_markdown, write_table

    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp's folder is private; a published report is not
        (tmp / "figures").mkdir()
        (tmp / "tables").mkdir()
        for fig in report.figures:
            F.save(fig, tmp / "figures")
        for table in report.tables:
            write_table(table, tmp / "tables")
        (tmp / "index.html").write_text(render_html(report))
        (tmp / "report.md").write_text(render_markdown(report))
        (tmp / "report.json").write_text(
            json.dumps(
                {
                    "format": FORMAT,
                    "version": VERSION,
                    "name": report.name,
                    "generated": report.generated,
                    "command": report.command,
                    "runs": [display_path(r.record.run_dir) for r in report.collection.runs],
                    "sweeps": [display_path(s.path) for s in report.collection.sweeps],
                    "tables": [t.name for t in report.tables],
                    "figures": [f.name for f in report.figures],
                },
                indent=2,
            )
            + "\n"
        )
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
            out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            if old is not None:
                old.rename(out)  # the previous report stays as it was
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def check_out(out: Path) -> None:
    """Refuse an output folder that holds something other than an mlx report: it is replaced
    whole, and nothing but a report of ours may be replaced."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ReportError(f"{out} exists and is not a folder; choose another --out")
    if any(out.iterdir()):
        try:
            meta = json.loads((out / "report.json").read_text())
        except (OSError, json.JSONDecodeError):
            meta = {}
        if meta.get("format") != FORMAT:
            raise ReportError(
                f"{out} exists and is not an mlx report (no report.json of format {FORMAT}); "
                "it would be replaced, so choose another --out or remove it"
            )


def build(paths: list[str], name: str, out: Path, report_args: list[str]) -> Report:
    """Collect ``paths`` and write the report to ``out``; returns what was written."""
    check_out(out)
    collection = collect(paths)
    report = make_report(collection, name, regenerate_command(collection, report_args))
    write_report(report, out)
    return report
