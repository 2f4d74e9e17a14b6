"""W&B tracking, offline: what a run logs is read back from W&B's own transaction log."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

from mlx import run as mlx_run


def read_wandb_log(run_dir: Path, wait: float = 15.0) -> list:
    """Records of an offline W&B run (`run-*.wandb`: LevelDB log format, protobuf records).

    W&B's service writes the log in the background: `wandb.finish()` can return before the last
    records reach the file (seen: an empty log read right after a finish). So this reads until
    the run's exit record is there, for up to ``wait`` seconds.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            records = _parse_wandb_log(run_dir)
        except Exception:  # a record half-written as we read: read again
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            continue
        if (
            any(r.WhichOneof("record_type") == "exit" for r in records)
            or time.monotonic() > deadline
        ):
            return records
        time.sleep(0.1)


def _parse_wandb_log(run_dir: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("run-*.wandb")
    data, block, pos = path.read_bytes(), 32768, 7  # 7-byte W&B header
    records, chunks = [], []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            break
        payload, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            records.append(payload)
        elif kind == 2:
            chunks = [payload]
        elif kind == 3:
            chunks.append(payload)
        elif kind == 4:
            records.append(b"".join([*chunks, payload]))
    parsed = []
    for raw in records:
        record = pb.Record()
        record.ParseFromString(raw)
        parsed.append(record)
    return parsed


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def summarise(records: list) -> dict:
    out: dict = {"history": [], "config": {}, "summary": {}, "exit": None}
    for r in records:
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out["group"], out["job_type"], out["tags"] = (
                r.run.run_group,
                r.run.job_type,
                list(r.run.tags),
            )
            out["config"].update({_key(i): json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            out["config"].update({_key(i): json.loads(i.value_json) for i in r.config.update})
        elif kind == "history":
            out["history"].append({_key(i): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            out["summary"].update({_key(i): json.loads(i.value_json) for i in r.summary.update})
        elif kind == "exit":
            out["exit"] = r.exit.exit_code
    return out


def offline_runs(out: Path) -> list[Path]:
    return sorted((out / "wandb").glob("offline-run-*"))


def test_offline_run_logs_metrics_config_and_finishes(
    make_cfg, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = make_cfg(["tracking=wandb", "debug=limit", "seed=5", "tracking.tags=[smoke]"])
    mlx_run.main(cfg)
    (run_dir,) = offline_runs(tmp_path / "run")
    logged = summarise(read_wandb_log(run_dir))
    assert logged["exit"] == 0
    assert logged["job_type"] == "run"
    assert logged["tags"] == ["smoke"]
    assert logged["config"]["seed"] == 5
    assert logged["config"]["model"]["net"]["_target_"] == "mlx.models.CNN"
    val = [h["val/acc"] for h in logged["history"] if "val/acc" in h]
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(val) == 2  # one value per epoch
    assert val[-1] == pytest.approx(record["metrics"]["val/acc"])
    tests = [h["test/acc"] for h in logged["history"] if "test/acc" in h]
    assert tests == [pytest.approx(record["metrics"]["test/acc"])]


def test_failed_run_still_finishes_wandb(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(["tracking=wandb", "debug=limit", "model.net.channels=[8,8,8,8]"])
    with pytest.raises(Exception, match="below 1x1"):
        mlx_run.main(cfg)
    import wandb

    assert wandb.run is None
    runs = offline_runs(tmp_path / "run")
    if runs:  # the logger may fail before W&B starts; if it started, it must be closed as failed
        assert summarise(read_wandb_log(runs[0]))["exit"] == 1


def test_failure_after_wandb_started_exits_1(make_cfg, tmp_path: Path, monkeypatch) -> None:
    cfg = make_cfg(["tracking=wandb", "debug=limit"])

    def boom(*args, **kwargs):
        raise RuntimeError("boom during test")

    monkeypatch.setattr("pytorch_lightning.Trainer.test", boom)
    with pytest.raises(RuntimeError, match="boom"):
        mlx_run.main(cfg)
    (run_dir,) = offline_runs(tmp_path / "run")
    assert summarise(read_wandb_log(run_dir))["exit"] == 1


def test_two_runs_in_one_process_get_two_wandb_runs(make_cfg, tmp_path: Path) -> None:
    mlx_run.main(make_cfg(["tracking=wandb", "debug=fdr"], name="a"))
    mlx_run.main(make_cfg(["tracking=wandb", "debug=fdr", "seed=1"], name="b"))
    (a,) = offline_runs(tmp_path / "a")
    (b,) = offline_runs(tmp_path / "b")
    assert summarise(read_wandb_log(a))["config"]["seed"] == 42
    assert summarise(read_wandb_log(b))["config"]["seed"] == 1


def test_tracking_none(make_cfg, tmp_path: Path) -> None:
    mlx_run.main(make_cfg(["tracking=none", "debug=fdr"]))
    assert not (tmp_path / "run" / "wandb").exists()
    assert (tmp_path / "run" / "metrics.json").exists()
