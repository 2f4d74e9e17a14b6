"""End-to-end runs in-process: training, the run record, resume, eval, and every experiment."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mlx import evaluate
from mlx import run as mlx_run
from mlx.config.locate import REPO_ROOT
from mlx.record import read_record

EXPERIMENTS = sorted(p.stem for p in (REPO_ROOT / "experiments").glob("*.yaml"))


def test_short_run_writes_complete_record(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(["debug=limit", "seed=3"])
    value = mlx_run.main(cfg)
    out = tmp_path / "run"
    rec = read_record(out)
    assert rec.status == "completed"
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["objective"] == {
        "metric": "val/acc",
        "mode": "max",
        "value": pytest.approx(value),
    }
    for key in (
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "test/loss",
        "test/acc",
        "model/params",
    ):
        assert key in rec.metrics, key
    assert set(summary["stages"]) == {"setup", "train"}  # train: fit, then test
    assert summary["data"]["split_sizes"]["train"] > 1000
    assert rec.provenance["seed"] == 3
    assert rec.provenance["reproduce"].startswith("mlx run")
    assert rec.provenance["packages"]["torch"]
    assert "sha" in rec.provenance["git"]
    assert rec.config["seed"] == 3 and rec.config["model"]["net"]["_target_"] == "mlx.models.CNN"
    assert [row["epoch"] for row in rec.history] == [0, 1]
    assert {"train/loss", "val/acc", "lr", "seconds"} <= set(rec.history[0])
    assert Path(summary["checkpoints"]["best"]).is_file()
    assert Path(summary["checkpoints"]["last"]).is_file()


def test_same_seed_same_result(make_cfg, tmp_path: Path) -> None:
    a = mlx_run.main(make_cfg(["debug=limit", "callbacks.early_stopping=null"], name="a"))
    b = mlx_run.main(make_cfg(["debug=limit", "callbacks.early_stopping=null"], name="b"))
    assert a == b
    ha = (tmp_path / "a" / "history.csv").read_text().splitlines()
    hb = (tmp_path / "b" / "history.csv").read_text().splitlines()
    strip = lambda lines: [",".join(r[:-1]) for r in csv.reader(lines)]  # noqa: E731  (drop seconds)
    assert strip(ha) == strip(hb)


def test_failed_run_is_recorded_as_failed(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(["debug=limit", "model.net.channels=[8,8,8,8]"])  # halves 8x8 below 1x1
    with pytest.raises(Exception, match="below 1x1"):
        mlx_run.main(cfg)
    rec = read_record(tmp_path / "run")
    assert rec.status == "failed"
    assert "below 1x1" in rec.summary["error"]


def test_resume_continues_from_last_checkpoint(make_cfg, tmp_path: Path) -> None:
    mlx_run.main(make_cfg(["debug=limit"], name="first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    mlx_run.main(
        make_cfg(["debug=limit", "trainer.max_epochs=4", f"ckpt_path={last}"], name="resumed")
    )
    rec = read_record(tmp_path / "resumed")
    assert [int(r["epoch"]) for r in rec.history] == [2, 3]  # epochs 0-1 were not repeated
    assert rec.summary["epochs_trained"] == 2 and rec.summary["last_epoch"] == 3


def test_resume_refuses_other_network(make_cfg, tmp_path: Path) -> None:
    mlx_run.main(make_cfg(["debug=limit"], name="first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    cfg = make_cfg(["debug=limit", "model.net.hidden=32", f"ckpt_path={last}"], name="other")
    with pytest.raises(Exception, match=r"different network.*hidden"):
        mlx_run.main(cfg)


def test_eval_uses_the_checkpoints_model_and_data(make_cfg, tmp_path: Path) -> None:
    mlx_run.main(make_cfg(["debug=limit"], name="trained"))
    best = tmp_path / "trained" / "checkpoints" / "best.ckpt"
    trained = read_record(tmp_path / "trained")
    # the composed model here is an MLP; eval must rebuild the checkpoint's CNN instead
    cfg = make_cfg(
        ["model=mlp", f"ckpt_path={best}", "task_name=eval", "trainer.limit_test_batches=null"],
        name="eval",
    )
    value = evaluate.main(cfg)
    rec = read_record(tmp_path / "eval")
    assert rec.status == "completed"
    assert rec.config["model"]["net"]["_target_"] == "mlx.models.CNN"
    assert rec.summary["objective"]["metric"] == "test/acc"
    assert value == pytest.approx(rec.metrics["test/acc"])
    assert rec.metrics["model/params"] == trained.metrics["model/params"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_fast_dev_run(experiment: str, make_cfg, tmp_path: Path) -> None:
    value = mlx_run.main(make_cfg([f"experiment={experiment}", "debug=fdr"]))
    rec = read_record(tmp_path / "run")
    assert rec.status == "completed"
    assert value == value  # not NaN


@pytest.mark.parametrize("option", ["default", "parallel"])
def test_input_pipelines(option: str, make_cfg) -> None:
    assert mlx_run.main(make_cfg([f"input={option}", "debug=fdr"])) >= 0


def test_regression_run(make_cfg, tmp_path: Path) -> None:
    value = mlx_run.main(make_cfg(["data=diabetes", "model=mlp", "debug=limit"]))
    rec = read_record(tmp_path / "run")
    assert rec.summary["objective"]["metric"] == "val/loss"
    assert {"test/mae", "test/r2", "test/loss"} <= set(rec.metrics)
    assert value > 0


def test_objective_must_be_logged(make_cfg) -> None:
    with pytest.raises(Exception, match="not logged for a regression task"):
        mlx_run.main(
            make_cfg(
                [
                    "data=diabetes",
                    "model=mlp",
                    "debug=fdr",
                    "objective.metric=val/acc",
                    "objective.mode=max",
                ]
            )
        )


def test_training_runs_with_the_setup_heap_frozen_and_unfreezes_after() -> None:
    import gc

    from mlx.engine.stage import gc_frozen

    before = gc.get_freeze_count()
    with pytest.raises(RuntimeError), gc_frozen():
        assert gc.get_freeze_count() > before  # setup's objects are out of the collector's sight
        raise RuntimeError("the trainer failed")
    assert gc.get_freeze_count() == before  # a failed run unfreezes too


@pytest.mark.parametrize("option", ["fdr", "limit", "overfit", "profiler"])
def test_each_debug_option_runs(make_cfg, tmp_path, option: str) -> None:
    overrides = [f"debug={option}", "trainer.max_epochs=2"]
    if option == "overfit":
        overrides = ["debug=overfit", "trainer.max_epochs=40"]
    mlx_run.main(make_cfg(overrides))
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "completed"
    if option == "overfit":
        # one batch, seen 40 times in the same order: the network learns it by heart
        assert record["metrics"]["train/loss"] < 0.05
        assert record["metrics"]["train/acc"] == 1.0
