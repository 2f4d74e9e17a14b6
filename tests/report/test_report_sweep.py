"""`mlx report` over a real sweep (grid over two parameters, two trials diverge and fail), and its
W&B mirror read back from the offline run's own log."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import QUIET, run_cli
from tests.engine.test_tracking import read_wandb_log, summarise

from .browser import Browser, skip_reason
from .test_report import ARTIFACTS

pytestmark = pytest.mark.slow

QUICK = ["trainer.max_epochs=2", *QUIET]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 trials: lr in {0.003, 0.03, 1e6} x hidden in {[16], [32]}; the 1e6 ones fail."""
    folder = tmp_path_factory.mktemp("sweeps") / "grid"
    res = run_cli(
        "run",
        "-m",
        "hydra/sweeper=mlx",
        "strategy=grid",
        "model=mlp",
        "model.lr=choice(0.003,0.03,1e6)",
        "model.net.hidden=choice([16],[32])",
        *QUICK,
        f"hydra.sweep.dir={folder}",
        f"hydra.sweeper.export_dir={folder}/experiment",
    )
    assert res.returncode == 0, res.output[-3000:]
    return folder


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sweep_report_tables_figures_and_page(sweep: Path, tmp_path: Path) -> None:
    ledger = digest(sweep / "sweep.db")
    out = tmp_path / "grid"
    wandb_dir = tmp_path / "wb"
    res = run_cli(
        "report", str(sweep), "--out", str(out), "--wandb", "offline", "--wandb-dir", str(wandb_dir)
    )
    assert res.returncode == 0, res.output
    assert digest(sweep / "sweep.db") == ledger  # reading the ledger never changes it

    with (sweep / "trials.csv").open() as f:
        expected = list(csv.DictReader(f))
    table = json.loads((out / "tables" / "trials_grid.json").read_text())
    rows = {r["number"]: r for r in table["rows"]}
    assert len(rows) == 6
    for t in expected:
        row = rows[int(t["number"])]
        assert row["state"] == t["state"]
        if t["state"] == "complete":
            assert row["val/acc"] == pytest.approx(float(t["val/acc"]))
        else:
            assert row["val/acc"] is None  # missing, not zero
            assert row["error"] == t["error"] and "diverged" in row["error"]
    assert sum(r["state"] == "fail" for r in rows.values()) == 2
    for name in ("best_so_far_grid", "parallel_grid", "importance_grid"):
        assert (out / "figures" / f"{name}.svg").is_file(), name
    importance = json.loads((out / "tables" / "importance_grid.json").read_text())["rows"]
    assert {r["parameter"] for r in importance} == {"model.lr", "model.net.hidden"}
    assert sum(r["importance"] for r in importance) == pytest.approx(1.0)
    md = (out / "report.md").read_text()
    summary = json.loads((sweep / "sweep.json").read_text())
    assert f"Best trial: {summary['best'][0]['number']}" in md

    # the report's W&B run joins the sweep's group and holds the tables and the folder
    (run_dir,) = (wandb_dir / "wandb").glob("offline-run-*")
    records = read_wandb_log(run_dir)
    logged = summarise(records)
    assert logged["group"] == "grid" and logged["job_type"] == "report" and logged["exit"] == 0
    (step,) = logged["history"]  # every table in one step
    for name in ("runs", "trials_grid", "importance_grid", "provenance"):
        assert step[f"report/{name}/_type"] == "table-file", name
    assert step["report/trials_grid/nrows"] == 6
    # the table W&B stored holds the report's rows
    (stored_table,) = run_dir.glob("files/media/table/report/trials_grid_*.table.json")
    data = json.loads(stored_table.read_text())
    assert data["columns"] == table["columns"]
    assert [row[0] for row in data["data"]] == [r["number"] for r in table["rows"]]
    artifacts = [
        r.artifact
        for r in records
        if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "report"
    ]
    assert [a.name for a in artifacts] == ["report-grid"]
    stored = {e.path for a in artifacts for e in a.manifest.contents}
    assert {"index.html", "report.md", "figures/best_so_far_grid.svg"} <= stored

    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Browser() as browser:
        page = browser.check_page(out / "index.html", ARTIFACTS / "report_sweep.png")
    assert page.problems == []
    assert page.images == len(list((out / "figures").glob("*.svg")))


def test_wandb_disabled_or_no_wandb_runs_log_nothing(sweep: Path, tmp_path: Path) -> None:
    # the sweep's runs used W&B offline (the default), so `auto` logs; `disabled` never does
    res = run_cli(
        "report",
        str(sweep),
        "--out",
        str(tmp_path / "r"),
        "--wandb",
        "disabled",
        "--wandb-dir",
        str(tmp_path / "wb"),
    )
    assert res.returncode == 0, res.output
    assert not (tmp_path / "wb").exists()
