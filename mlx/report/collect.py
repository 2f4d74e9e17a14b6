"""Find and read the run records (and sweep summaries) a report or comparison is made from.

A path given to ``mlx report`` or ``mlx compare`` may be a run folder (it holds
``provenance.json``), a sweep folder (``sweep.json`` and the trials' run folders), a multirun
folder (one run folder per job), any folder above them, or a glob of these. Everything is read
and checked before anything is written: a path with no records, or a record of another format
version, stops the command with one clear message.
"""

from __future__ import annotations

import csv
import glob
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlx.errors import MlxError
from mlx.record import PROVENANCE_FILE, RunRecord, read_record
from mlx.sweep.ledger import LEDGER_FILE
from mlx.sweep.results import FORMAT as SWEEP_FORMAT
from mlx.sweep.results import SUMMARY_FILE as SWEEP_FILE
from mlx.sweep.results import TRIALS_FILE
from mlx.sweep.results import VERSION as SWEEP_VERSION

# folders below a run that never hold another run's record
_SKIP_DIRS = {"checkpoints", "wandb", "csv", "lightning_logs", ".hydra", "compressed"}


class ReportError(MlxError):
    """Input a report or comparison cannot be made from; nothing was written."""


@dataclass
class Run:
    """One run record and the name it goes by in a report.

    Attributes:
        record: the record read from disk.
        name: a short label, unique within the report (the folder's path below the common root).
        sweep: the name of the sweep the run is a trial of, if any.
    """

    record: RunRecord
    name: str
    sweep: str | None = None

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def seed(self) -> Any:
        return self.record.provenance.get("seed", self.record.config.get("seed"))

    @property
    def error(self) -> str | None:
        return self.record.summary.get("error")

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "pruned")


@dataclass
class Sweep:
    """A sweep folder: its summary (``sweep.json``), its trials table and its ledger.

    Attributes:
        path: the sweep folder.
        summary: ``sweep.json`` as written by the sweeper.
        trials: the rows of ``trials.csv``, cells parsed (numbers, JSON lists, None for empty).
        ledger: the Optuna ledger (``sweep.db``) when present.
        runs: the trials' run records found in the folder.
    """

    path: Path
    summary: dict[str, Any]
    trials: list[dict[str, Any]]
    ledger: Path | None
    runs: list[Run] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.summary.get("name") or self.path.name)

    @property
    def objectives(self) -> list[dict[str, str]]:
        return list(self.summary.get("objectives", []))

    @property
    def params(self) -> list[str]:
        space = self.summary.get("search_space") or {}
        names = list(space) if isinstance(space, dict) else []
        if names:
            return names
        fixed = {"number", "state", "seconds", "pruned_at_epoch", "error", "output_dir"}
        objectives = {o["metric"] for o in self.objectives}
        return [k for k in (self.trials[0] if self.trials else {}) if k not in fixed | objectives]

    @property
    def is_nas(self) -> bool:
        return "top_k" in self.summary


@dataclass
class Collection:
    """Everything a report is made from."""

    runs: list[Run]
    sweeps: list[Sweep]
    root: Path | None


def _parse_cell(value: str) -> Any:
    if value == "":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if value in ("True", "False"):
        return value == "True"
    return value


def read_sweep(path: Path) -> Sweep:
    """Read a sweep folder's ``sweep.json`` and ``trials.csv``.

    Raises:
        ReportError: the summary is unreadable or of another format version.
    """
    summary_path = path / SWEEP_FILE
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{summary_path} is not valid JSON ({e})") from e
    if summary.get("format") != SWEEP_FORMAT:
        raise ReportError(
            f"{summary_path} is not an mlx sweep summary (format {summary.get('format')!r})"
        )
    if summary.get("version") != SWEEP_VERSION:
        raise ReportError(
            f"{summary_path} has sweep format version {summary.get('version')}, but this mlx reads "
            f"version {SWEEP_VERSION}; use the mlx version that wrote it"
        )
    trials: list[dict[str, Any]] = []
    trials_path = path / TRIALS_FILE
    if trials_path.is_file():
        with trials_path.open(newline="") as f:
            trials = [{k: _parse_cell(v) for k, v in row.items()} for row in csv.DictReader(f)]
    ledger = path / LEDGER_FILE
    return Sweep(
        path=path, summary=summary, trials=trials, ledger=ledger if ledger.is_file() else None
    )


def _expand(spec: str) -> list[Path]:
    if any(c in spec for c in "*?["):
        matches = sorted(Path(p) for p in glob.glob(spec, recursive=True))
        if not matches:
            raise ReportError(f"'{spec}' matches no files or folders")
        return matches
    path = Path(spec)
    if not path.exists():
        raise ReportError(f"{spec} does not exist")
    return [path]


def _natural(path: Path) -> list[Any]:
    """Sort key: trial 2 before trial 10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name)]


def _record_dirs(path: Path) -> list[Path]:
    """Run folders at or below ``path`` (a folder with a run record is not searched further)."""
    if path.is_file():
        path = path.parent
    if (path / PROVENANCE_FILE).is_file():
        return [path]
    found: list[Path] = []
    for child in sorted((p for p in path.iterdir() if p.is_dir()), key=_natural):
        if child.name in _SKIP_DIRS or child.name.startswith("."):
            continue
        found.extend(_record_dirs(child))
    return found


def _sweep_dirs(path: Path) -> list[Path]:
    if path.is_file():
        path = path.parent
    if (path / PROVENANCE_FILE).is_file():
        return []
    if (path / SWEEP_FILE).is_file():
        return [path]
    found: list[Path] = []
    for child in sorted(p for p in path.iterdir() if p.is_dir()):
        if child.name not in _SKIP_DIRS and not child.name.startswith("."):
            found.extend(_sweep_dirs(child))
    return found


def _common_root(dirs: list[Path]) -> Path | None:
    if not dirs:
        return None
    parts = [d.resolve().parts for d in dirs]
    common: list[str] = []
    for items in zip(*parts, strict=False):
        if len(set(items)) != 1:
            break
        common.append(items[0])
    return Path(*common) if common else None


def _names(dirs: list[Path]) -> list[str]:
    """Short unique labels: each folder's path below the folders' common root."""
    if len(dirs) == 1:
        return [dirs[0].resolve().name]
    root = _common_root(dirs)
    names = []
    for d in dirs:
        rel = d.resolve().relative_to(root) if root else d.resolve()
        names.append(str(rel) if str(rel) != "." else d.resolve().name)
    return names


def collect(paths: list[str]) -> Collection:
    """Find, read and check every run record and sweep under ``paths``.

    Args:
        paths: run, sweep or multirun folders, folders above them, or globs of these.

    Raises:
        ReportError: no paths, a path that does not exist or holds no run record, or a record
            that cannot be read (another format version, broken JSON).
    """
    if not paths:
        raise ReportError("give at least one run, multirun or sweep folder")
    run_dirs: list[Path] = []
    sweep_dirs: list[Path] = []
    for spec in paths:
        for path in _expand(spec):
            found = _record_dirs(path)
            if not found:
                raise ReportError(
                    f"{path} holds no mlx run records (no {PROVENANCE_FILE} in it or below it); "
                    "give a run folder (outputs/run/runs/DATE), a multirun or sweep folder"
                )
            run_dirs.extend(found)
            sweep_dirs.extend(_sweep_dirs(path))
    run_dirs = list(dict.fromkeys(d.resolve() for d in run_dirs))
    sweep_dirs = list(dict.fromkeys(d.resolve() for d in sweep_dirs))
    runs = []
    for run_dir, name in zip(run_dirs, _names(run_dirs), strict=True):
        runs.append(Run(read_record(run_dir), name))
    sweeps = [read_sweep(d) for d in sweep_dirs]
    for sweep in sweeps:
        for run in runs:
            if sweep.path in run.record.run_dir.parents:
                run.sweep = sweep.name
                sweep.runs.append(run)
    return Collection(runs=runs, sweeps=sweeps, root=_common_root(run_dirs))
