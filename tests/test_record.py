"""The run record: atomic files, versioning, and reading back."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import pytest

from mlx.record import METRICS_FILE, PROVENANCE_FILE, Recorder, RecordError, provenance, read_record


def make_record(run_dir: Path, fail: bool = False) -> None:
    prov = provenance(
        command="run",
        seed=7,
        overrides=["seed=7", "model=mlp"],
        argv=["mlx", "run", "seed=7", "model=mlp"],
    )
    rec = Recorder(run_dir, "seed: 7\nmodel:\n  lr: 0.1\n", prov)
    with pytest.raises(RuntimeError) if fail else nullcontext(), rec, rec.stage("train"):
        rec.metrics = {"val/acc": 0.9}
        if fail:
            raise RuntimeError("diverged: loss is NaN")


def test_completed_record_round_trip(tmp_path: Path) -> None:
    make_record(tmp_path)
    rec = read_record(tmp_path)
    assert rec.status == "completed"
    assert rec.metrics == {"val/acc": 0.9}
    assert rec.config == {"seed": 7, "model": {"lr": 0.1}}
    assert rec.provenance["reproduce"] == "mlx run seed=7 model=mlp"
    assert rec.provenance["command_line"] == "mlx run seed=7 model=mlp"
    assert "train" in rec.summary["stages"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_failed_record_keeps_error(tmp_path: Path) -> None:
    make_record(tmp_path, fail=True)
    rec = read_record(tmp_path)
    assert rec.status == "failed"
    assert "diverged: loss is NaN" in rec.summary["error"]


def test_interrupted_run_reads_as_interrupted(tmp_path: Path) -> None:
    make_record(tmp_path)
    (tmp_path / METRICS_FILE).unlink()
    assert read_record(tmp_path).status == "interrupted"


def test_not_a_record(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="holds no mlx run record"):
        read_record(tmp_path)


def test_other_version_is_refused(tmp_path: Path) -> None:
    make_record(tmp_path)
    data = json.loads((tmp_path / PROVENANCE_FILE).read_text())
    data["version"] = 99
    (tmp_path / PROVENANCE_FILE).write_text(json.dumps(data))
    with pytest.raises(RecordError, match="version 99"):
        read_record(tmp_path)
