"""The validation gate: conditions parsed (never evaluated), the verdict on a record, the checks
before any work, and the gate in a real run (record, exit status)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlx import run as mlx_run
from mlx.analysis.validation import Validation, flatten, parse
from mlx.errors import ConfigError
from tests.config.test_bad_input import config_error
from tests.conftest import QUIET, SHORT, compose_cfg, run_cli


def _record(**metrics: float) -> dict:
    return {
        "metrics": metrics,
        "analysis": {
            "metrics": {"acc": {"value": 0.91, "low": 0.88, "high": 0.94}},
            "slices": {
                "main_metric": "acc",
                "slices": [
                    {"feature": "sex", "slice": "F", "gap": {"acc": -0.02}},
                    {"feature": "sex", "slice": "M", "gap": {"acc": 0.015}},
                    {"feature": "age", "slice": "(0, 30]", "gap": {"acc": -0.08}},
                    {"feature": "age", "slice": "(30, 60]", "gap": {"acc": None}},
                ],
            },
        },
    }


def test_conditions_are_parsed() -> None:
    c = parse("test/acc >= 0.95")
    assert (c.key, c.op, c.number, c.baseline) == ("test/acc", ">=", 0.95, False)
    c = parse("metrics.acc.low>0.9")
    assert (c.key, c.op, c.number) == ("metrics.acc.low", ">", 0.9)
    c = parse("test/acc >= baseline - 0.005")
    assert (c.key, c.baseline, c.number) == ("test/acc", True, -0.005)
    assert c.threshold(0.95) == pytest.approx(0.945)
    c = parse("test/loss <= baseline")
    assert c.baseline and c.number == 0.0
    c = parse("slices.sex within 0.03")
    assert (c.column, c.op, c.number) == ("sex", "within", 0.03)
    assert parse("test/mae < 1e-2").number == 0.01


@pytest.mark.parametrize(
    "text",
    ["test/acc => 0.9", "test/acc >= 0.9; import os", "__import__('os') > 1", "slices.sex within"],
)
def test_other_text_is_refused_not_evaluated(text: str) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        parse(text)


def test_flatten_reads_values_and_interval_ends() -> None:
    flat = flatten({"metrics": {"acc": {"value": 0.9, "low": 0.8, "high": 0.95}, "n": 3}})
    assert flat == {
        "metrics.acc": 0.9,
        "metrics.acc.low": 0.8,
        "metrics.acc.high": 0.95,
        "metrics.n": 3.0,
    }
    assert flatten({"x": {"value": float("nan")}, "ok": True}) == {}


def test_verdict_blesses_and_rejects_naming_each_failed_condition() -> None:
    gate = Validation(["test/acc >= 0.9", "metrics.acc.low > 0.85", "slices.sex within 0.03"])
    verdict = gate.verdict(_record(**{"test/acc": 0.93}))
    assert verdict["verdict"] == "blessed" and verdict["failed"] == []
    sex = verdict["conditions"][2]
    assert sex["value"] == pytest.approx(0.02) and sex["worst_slice"] == "sex=F"

    gate = Validation(["test/acc >= 0.95", "metrics.acc.low > 0.85", "slices.age within 0.05"])
    verdict = gate.verdict(_record(**{"test/acc": 0.93}))
    assert verdict["verdict"] == "rejected"
    assert verdict["failed"] == ["test/acc >= 0.95", "slices.age within 0.05"]
    # a slice whose gap is undefined does not count
    assert verdict["conditions"][2]["worst_slice"] == "age=(0, 30]"


def test_a_key_missing_at_verdict_time_fails_its_condition() -> None:
    verdict = Validation(["metrics.f1_macro >= 0.5"]).verdict(_record())
    assert verdict["verdict"] == "rejected"
    assert "not computed" in verdict["conditions"][0]["reason"]


def _baseline(tmp_path: Path, status: str = "completed", **data: object) -> Path:
    folder = tmp_path / "baseline"
    folder.mkdir()
    record = {
        "status": status,
        "metrics": {"test/acc": 0.95},
        "data": {"source": "Digits()", "task": "classification", **data},
    }
    (folder / "metrics.json").write_text(json.dumps(record))
    return folder


def test_baseline_conditions(tmp_path: Path) -> None:
    gate = Validation(["test/acc >= baseline - 0.005"], baseline=str(_baseline(tmp_path)))
    assert gate.verdict(_record(**{"test/acc": 0.946}))["verdict"] == "blessed"
    rejected = gate.verdict(_record(**{"test/acc": 0.944}))
    assert rejected["verdict"] == "rejected"
    assert rejected["conditions"][0]["threshold"] == pytest.approx(0.945)


def test_baseline_problems_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not set"):
        Validation(["test/acc >= baseline"])
    with pytest.raises(ConfigError, match="not an mlx run folder"):
        Validation(["test/acc >= baseline"], baseline=str(tmp_path / "nope"))
    failed = _baseline(tmp_path, status="failed")
    with pytest.raises(ConfigError, match="did not complete"):
        Validation(["test/acc >= baseline"], baseline=str(failed))


def test_baseline_trained_on_other_data_is_refused(tmp_path: Path) -> None:
    gate = Validation(["test/acc >= baseline"], baseline=str(_baseline(tmp_path, split_seed=1)))
    with pytest.raises(ConfigError, match="other data: split_seed"):
        gate.check_data({"source": "Digits()", "task": "classification", "split_seed": 0})


def test_keys_the_run_does_not_compute_are_refused() -> None:
    gate = Validation(["test/acuracy >= 0.9"])
    with pytest.raises(ConfigError, match="Did you mean 'test/acc'"):
        gate.check_keys({"test/acc", "test/loss"}, None)
    with pytest.raises(ConfigError, match="needs the slices analysis"):
        Validation(["slices.sex within 0.03"]).check_keys({"test/acc"}, None)
    with pytest.raises(ConfigError, match="Did you mean 'sex'"):
        Validation(["slices.sexe within 0.03"]).check_keys({"test/acc"}, {"sex", "age"})


def test_static_checks_on_the_command_line(tmp_path: Path) -> None:
    message = config_error("analysis=validation", 'analysis.validation.thresholds=["test/acc ~ 1"]')
    assert "cannot read" in message
    unquoted = config_error("analysis=validation", "analysis.validation.thresholds=[test/acc >= 1]")
    assert "needs quotes" in unquoted
    message = config_error("analysis=validation", "analysis.on=all")
    assert "compression is empty" in message
    message = config_error(
        "analysis=validation", f"analysis.validation.baseline={tmp_path / 'missing'}"
    )
    assert "not an mlx run folder" in message


GATE = ["analysis=validation", "tracking=none", *QUIET, *SHORT]


def test_a_rejected_model_fails_the_command_after_the_record(tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = run_cli(
        "run",
        *GATE,
        'analysis.validation.thresholds=["test/acc >= 0.999","test/loss <= 100"]',
        "analysis.validation.fail_run=true",
        f"hydra.run.dir={run}",
    )
    assert res.returncode == 3, res.output
    assert "rejected the model: test/acc >= 0.999" in res.stderr
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "completed"  # the training result is kept
    gate = record["validation"]
    assert gate["verdict"] == "rejected" and gate["failed"] == ["test/acc >= 0.999"]
    assert gate["conditions"][0]["value"] == record["metrics"]["test/acc"]
    assert gate["conditions"][1]["passed"]
    # mlx eval gates a saved checkpoint the same way (only test metrics exist there)
    cfg = compose_cfg(
        [
            *GATE,
            f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
            'analysis.validation.thresholds=["test/acc >= 0.01"]',
        ],
        tmp_path / "eval",
    )
    mlx_run.run(cfg, command="eval")
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["validation"]["verdict"] == "blessed"
    assert evaluated["validation"]["conditions"][0]["value"] == pytest.approx(
        record["metrics"]["test/acc"]
    )
    cfg = compose_cfg(
        [
            *GATE,
            f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
            'analysis.validation.thresholds=["val/acc >= 0.01"]',
        ],
        tmp_path / "eval_val",
    )
    with pytest.raises(ConfigError, match="'val/acc', which this run does not compute"):
        mlx_run.run(cfg, command="eval")
    # the report shows the verdict and each condition
    from mlx.report.build import build

    build([str(run)], "gate", tmp_path / "report", [])
    page = (tmp_path / "report" / "report.md").read_text()
    assert "Validation gate of" in page and ": rejected" in page
    assert "test/acc >= 0.999" in page


def test_a_threshold_on_a_metric_not_computed_stops_before_training(tmp_path: Path) -> None:
    cfg = compose_cfg([*GATE, 'analysis.validation.thresholds=["test/f1 >= 0.5"]'], tmp_path)
    with pytest.raises(ConfigError, match="'test/f1', which this run does not compute"):
        mlx_run.run(cfg)
    assert not (tmp_path / "history.csv").exists()
    assert not (tmp_path / "checkpoints").exists()


def test_a_baseline_checkpoint_is_evaluated_on_this_runs_test_split(tmp_path: Path) -> None:
    first = tmp_path / "first"
    # the whole test split, as the baseline's evaluation reads it
    mlx_run.run(
        compose_cfg([*QUIET, *SHORT, "trainer.limit_test_batches=1.0", "tracking=none"], first)
    )
    ckpt = first / "checkpoints" / "best.ckpt"
    first_acc = json.loads((first / "metrics.json").read_text())["metrics"]["test/acc"]

    gate = [
        *GATE,
        f"analysis.validation.baseline={ckpt}",
        "trainer.max_epochs=2",
        'analysis.validation.thresholds=["test/acc >= baseline - 1","test/loss < baseline - 100"]',
    ]
    mlx_run.run(compose_cfg(gate, tmp_path / "second"))
    record = json.loads((tmp_path / "second" / "metrics.json").read_text())
    # the checkpoint evaluated here gives the test accuracy its own run recorded
    assert record["validation_baseline"]["metrics"]["test/acc"] == pytest.approx(first_acc)
    verdict = record["validation"]
    assert verdict["failed"] == ["test/loss < baseline - 100"]
    assert verdict["conditions"][0]["threshold"] == pytest.approx(first_acc - 1)

    # a checkpoint of other data, or a baseline key it cannot have, is refused before training
    other = [*GATE, f"analysis.validation.baseline={ckpt}", "data.split_seed=3"]
    with pytest.raises(ConfigError, match=r"other data: data.split_seed \(0 there, 3 here\)"):
        mlx_run.run(compose_cfg(other, tmp_path / "third"))
    assert not (tmp_path / "third" / "checkpoints").exists()
    val = [*gate[:-1], 'analysis.validation.thresholds=["val/acc >= baseline"]']
    with pytest.raises(ConfigError, match="evaluated on the test split only"):
        mlx_run.run(compose_cfg(val, tmp_path / "fourth"))
