"""The report's W&B mirror, offline: tables whose columns mix numbers and text (an architecture's
choices) are logged as text, and the mode follows the runs' own tracking."""

from __future__ import annotations

import json
from pathlib import Path

from mlx.record import RunRecord
from mlx.report.build import Report, Section
from mlx.report.collect import Collection, Run
from mlx.report.tables import Table
from mlx.report.tracking import log_report, wandb_mode
from tests.engine.test_tracking import read_wandb_log, summarise


def run_with(tracking: dict | None, tmp_path: Path, name: str) -> Run:
    config = {"tracking": tracking} if tracking is not None else {}
    return Run(RunRecord(tmp_path / name, "completed", config, {}, {}, {}, []), name)


def test_mode_follows_the_runs_tracking(tmp_path: Path) -> None:
    wandb = {"_target_": "pytorch_lightning.loggers.WandbLogger", "mode": "offline"}
    online = {**wandb, "mode": "online"}
    csv = {"_target_": "pytorch_lightning.loggers.CSVLogger"}
    assert wandb_mode("auto", [run_with(wandb, tmp_path, "a")]) == "offline"
    assert wandb_mode("auto", [run_with(online, tmp_path, "a")]) == "online"
    assert (
        wandb_mode("auto", [run_with(online, tmp_path, "a"), run_with(wandb, tmp_path, "b")])
        == "offline"
    )
    assert (
        wandb_mode("auto", [run_with(csv, tmp_path, "a"), run_with(None, tmp_path, "b")])
        == "disabled"
    )
    assert wandb_mode("disabled", [run_with(wandb, tmp_path, "a")]) == "disabled"


def test_mixed_type_columns_are_logged_as_text(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "index.html").write_text("<!DOCTYPE html><title>x</title>")
    arch = Table(
        "arch_x",
        "Architecture",
        ["choice", "value"],
        [
            {"choice": "width", "value": 32},
            {"choice": "op", "value": "conv3x3"},
            {"choice": "skip", "value": None},
        ],
    )
    run = run_with({"_target_": "WandbLogger", "group": "g", "project": "p"}, tmp_path, "a")
    report = Report(
        "x", "mlx report a", "now", Collection([run], [], None), [Section("s", "S", [arch])]
    )
    where = log_report(report, folder, mode="offline", wandb_dir=tmp_path / "wb")
    assert "wandb sync" in where
    (run_dir,) = (tmp_path / "wb" / "wandb").glob("offline-run-*")
    logged = summarise(read_wandb_log(run_dir))
    assert logged["group"] == "g" and logged["job_type"] == "report" and logged["exit"] == 0
    (stored,) = run_dir.glob("files/media/table/report/arch_x_*.table.json")
    assert json.loads(stored.read_text())["data"] == [
        ["width", "32"],
        ["op", "conv3x3"],
        ["skip", None],
    ]
