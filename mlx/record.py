"""The run record: what every run leaves in its output folder, and the one way to read it back.

A run folder holds:

- ``config.yaml``: the resolved config the run used;
- ``provenance.json``: git SHA and dirty flag, package versions, seed, host, the exact command line
  and a command that reproduces this run alone (written when the run starts);
- ``metrics.json``: status (``completed``, ``pruned`` for a sweep trial stopped early, or ``failed``), final ``split/name`` metrics, the
  objective, wall time per stage, checkpoints, and the error text of a failed run (written when
  the run ends, whatever the ending);
- ``history.csv``: one row per epoch (written by the engine as epochs finish).

A folder with ``provenance.json`` but no ``metrics.json`` is a run that was killed. Every file is
written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from mlx.errors import MlxError

FORMAT = "mlx.run"
VERSION = 1
CONFIG_FILE = "config.yaml"
PROVENANCE_FILE = "provenance.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"

PACKAGES = (
    "mlx",
    "torch",
    "pytorch-lightning",
    "torchmetrics",
    "hydra-core",
    "omegaconf",
    "wandb",
    "numpy",
    "scikit-learn",
    "pandas",
)


class RecordError(MlxError):
    """A folder that is not a readable run record of this format version."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def git_state(cwd: str | Path) -> dict[str, Any]:
    """The SHA, branch and dirty flag of the git checkout at ``cwd`` (all None outside one)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    sha = git("rev-parse", "HEAD")
    if sha is None:
        return {"sha": None, "branch": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "sha": sha,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(status),
    }


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages a result depends on (None where missing)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance(
    *, command: str, seed: int, overrides: list[str], argv: list[str] | None = None
) -> dict[str, Any]:
    """Everything needed to tell where a result came from and to run it again.

    Args:
        command: the mlx sub-command (``run``, ``eval``).
        seed: the run's seed.
        overrides: this run's own Hydra overrides (one job of a multirun has its own).
        argv: the process's command line; defaults to the `mlx` command as typed, else
            ``sys.argv``.
    """
    typed = os.environ.get("MLX_COMMAND_LINE") if argv is None else None
    argv = list(sys.argv if argv is None else argv)
    cwd = os.getcwd()
    return {
        "format": FORMAT,
        "version": VERSION,
        "started": _now(),
        # as typed (set by the `mlx` command); a run started from Python gets its argv
        "command_line": typed or (shlex.join(["mlx", *argv[1:]]) if argv else None),
        # a sweep trial's `trial=` override ties it to the sweep's ledger: the run alone is
        # reproduced without it
        "reproduce": shlex.join(
            ["mlx", command, *(o for o in overrides if not o.lstrip("+~").startswith("trial="))]
        ),
        "overrides": overrides,
        "seed": seed,
        "cwd": cwd,
        "git": git_state(cwd),
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
    }


@dataclass
class Recorder:
    """Writes one run's record as the run goes. Use as a context manager around the run:
    on exit it writes ``metrics.json`` with status ``completed`` or ``failed``.

    Args:
        run_dir: the run's output folder.
        config_yaml: the resolved config as YAML text.
        provenance: from :func:`provenance`.
        writes: false in the processes of a multi-process run other than rank 0, which run the
            same stages but leave the files to rank 0.
    """

    run_dir: Path
    config_yaml: str
    provenance: dict[str, Any]
    stages: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    objective: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    error: str | None = None
    writes: bool = True

    def __enter__(self) -> Recorder:
        self._t0 = time.perf_counter()
        if self.writes:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text(self.run_dir / CONFIG_FILE, self.config_yaml)
            write_json(self.run_dir / PROVENANCE_FILE, self.provenance)
        return self

    def write_config(self, config_yaml: str) -> None:
        """Write ``config.yaml`` again (a search stage chose the network after the run began)."""
        self.config_yaml = config_yaml
        if self.writes:
            write_text(self.run_dir / CONFIG_FILE, config_yaml)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage; its wall time lands in ``metrics.json`` under ``stages``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(time.perf_counter() - t0, 4)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            # a trial stopped early by its sweep's pruner ends "pruned", not "completed"
            self.status = "pruned" if self.status == "pruned" else "completed"
        else:
            self.status = "failed"
            self.error = "".join(traceback.format_exception_only(exc_type, exc)).strip()
        self.write()

    def write(self) -> None:
        """Write ``metrics.json`` from the current state."""
        if not self.writes:
            return
        write_json(
            self.run_dir / METRICS_FILE,
            {
                "format": FORMAT,
                "version": VERSION,
                "status": self.status,
                "finished": _now(),
                "wall_seconds": round(time.perf_counter() - self._t0, 4),
                "objective": self.objective,
                "metrics": self.metrics,
                "stages": self.stages,
                **self.extra,
                "error": self.error,
            },
        )


@dataclass
class RunRecord:
    """A run record read back from disk."""

    run_dir: Path
    status: str  # completed | pruned | failed | interrupted
    config: dict[str, Any]
    provenance: dict[str, Any]
    metrics: dict[str, float]
    summary: dict[str, Any]
    history: list[dict[str, float]]


def _check_version(data: dict[str, Any], path: Path) -> None:
    if data.get("format") != FORMAT:
        raise RecordError(f"{path} is not an mlx run record (format {data.get('format')!r})")
    if data.get("version") != VERSION:
        raise RecordError(
            f"{path} has record version {data.get('version')}, but this mlx reads version "
            f"{VERSION}; use the mlx version that wrote it"
        )


def read_history(path: Path) -> list[dict[str, float]]:
    """Rows of a ``history.csv`` (empty cells left out); [] when there is none."""
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def read_record(run_dir: str | Path) -> RunRecord:
    """Read and validate the run record in ``run_dir``.

    Raises:
        RecordError: the folder holds no run record, or one of another format version.
    """
    import yaml
    from omegaconf._utils import get_yaml_loader

    run_dir = Path(run_dir)
    prov_path = run_dir / PROVENANCE_FILE
    if not prov_path.is_file():
        raise RecordError(f"{run_dir} holds no mlx run record ({PROVENANCE_FILE} is missing)")
    try:
        prov = json.loads(prov_path.read_text())
        _check_version(prov, prov_path)
        metrics_path = run_dir / METRICS_FILE
        summary: dict[str, Any] = {}
        if metrics_path.is_file():
            summary = json.loads(metrics_path.read_text())
            _check_version(summary, metrics_path)
        config_path = run_dir / CONFIG_FILE
        # OmegaConf's own YAML rules, without building a DictConfig (a report reads hundreds)
        config = (
            yaml.load(config_path.read_text(), Loader=get_yaml_loader())
            if config_path.is_file()
            else {}
        )
    except json.JSONDecodeError as e:
        raise RecordError(f"{run_dir}: a record file is not valid JSON ({e})") from e
    history: list[dict[str, float]] = []
    history_path = run_dir / HISTORY_FILE
    if history_path.is_file():
        with history_path.open() as f:
            history = [
                {k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)
            ]
    return RunRecord(
        run_dir=run_dir,
        status=summary.get("status", "interrupted"),
        config=config,  # type: ignore[arg-type]
        provenance=prov,
        metrics=summary.get("metrics", {}),
        summary=summary,
        history=history,
    )
