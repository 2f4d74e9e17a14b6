"""The analyse stage in real runs: the evidence is the model's (its accuracy is the test
accuracy the run records), every compression stage can be analysed, a failing analysis keeps
the run, and reports and comparisons show the results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from mlx import run as mlx_run
from mlx.errors import ConfigError
from mlx.report.build import build
from mlx.report.compare import compare
from tests.conftest import QUIET, compose_cfg

# a few quick epochs, the whole test split (the analyses read all of it)
QUICK = [
    *QUIET,
    "tracking=none",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
]
IMAGES = [
    *QUICK,
    "analysis=[metrics,slices,validation]",
    "analysis.metrics.n_boot=50",
    "analysis.slices.n_boot=20",
    "analysis.slices.intensity_buckets=3",
    "analysis.slices.min_size=10",  # digits: 27 test images a class
    'analysis.validation.thresholds=["metrics.acc.low >= 0","slices.class within 1"]',
]


def _record(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def image_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("analysed")
    for seed in (1, 2):
        mlx_run.run(compose_cfg([*IMAGES, f"seed={seed}"], root / f"seed{seed}"))
    return root


def test_metrics_read_the_models_own_predictions(image_runs: Path) -> None:
    record = _record(image_runs / "seed1")
    assert record["status"] == "completed"
    metrics = record["analysis"]["metrics"]
    # the analysis' accuracy is the test accuracy Lightning measured on the same checkpoint
    assert metrics["acc"]["value"] == pytest.approx(record["metrics"]["test/acc"], abs=1e-6)
    assert metrics["acc"]["low"] <= metrics["acc"]["value"] <= metrics["acc"]["high"]
    assert metrics["size"] == record["data"]["split_sizes"]["test"]
    assert np.sum(metrics["confusion"]) == metrics["size"]
    slices = record["analysis"]["slices"]
    by_class = [s for s in slices["slices"] if s["feature"] == "class"]
    assert sum(s["size"] for s in by_class) == metrics["size"]
    assert {s["feature"] for s in slices["slices"]} == {"class", "intensity"}
    assert record["validation"]["verdict"] == "blessed"
    assert set(record["analysis_seconds"]) == {"metrics", "slices"}
    for name in ("metrics/confusion.svg", "metrics/reliability.svg", "slices/slices.svg"):
        assert (image_runs / "seed1" / "analysis" / name).is_file(), name


def test_report_and_compare_show_the_analysis(image_runs: Path, tmp_path: Path) -> None:
    report = build([str(image_runs)], "analysed", tmp_path / "report", [])
    names = [f.name for f in report.figures]
    assert any(n.startswith("analysis_") and "reliability" in n for n in names)
    page = (tmp_path / "report" / "report.md").read_text()
    assert "Validation gate of" in page and "metrics.acc" in page
    console = Console(record=True, width=200)
    compare([str(image_runs / "seed1"), str(image_runs / "seed2")], console=console)
    text = console.export_text()
    first = _record(image_runs / "seed1")["analysis"]["metrics"]["acc"]
    line = next(ln for ln in text.splitlines() if " metrics.acc " in ln)
    assert f"{first['value']:.4f}"[:5] in line and "validation" in text
    assert "value [interval]" in text and "slices.overall.acc" not in text


def test_every_compression_stage_is_analysed(tmp_path: Path) -> None:
    cfg = compose_cfg(
        [
            *QUICK,
            "compression=[prune]",
            "compression.prune.fine_tune_epochs=0",
            "analysis=[metrics]",
            "analysis.metrics.n_boot=20",
            "analysis.on=all",
        ],
        tmp_path,
    )
    mlx_run.run(cfg)
    record = _record(tmp_path)
    assert record["analysis_networks"] == ["baseline", "1_prune"]
    analysed = record["analysis"]
    assert analysed["baseline"]["metrics"]["acc"]["value"] == pytest.approx(
        record["metrics"]["test/acc"], abs=1e-6
    )
    assert analysed["1_prune"]["metrics"]["acc"]["value"] == pytest.approx(
        record["metrics"]["compressed/test/acc"], abs=1e-6
    )
    assert (tmp_path / "analysis" / "1_prune" / "metrics" / "metrics.csv").is_file()


@pytest.fixture
def people(tmp_path: Path) -> Path:
    """A table with raw categorical and numeric columns (what slices name)."""
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "sex": rng.choice(["F", "M"], n),
            "x": rng.normal(size=n),
        }
    )
    frame["y"] = (frame["x"] + 0.5 * (frame["sex"] == "M") > 0).astype(int)
    path = tmp_path / "people.csv"
    frame.to_csv(path, index=False)
    return path


def _table_run(people: Path, *more: str) -> list[str]:
    return [
        *QUICK,
        "data=csv",
        "model=mlp",
        f"data.source.path={people}",
        "data.source.target=y",
        "analysis=[metrics,slices]",
        "analysis.metrics.n_boot=20",
        "analysis.slices.n_boot=20",
        "analysis.slices.columns=[sex]",
        *more,
    ]


def test_slices_name_raw_columns_and_a_failing_analysis_keeps_the_run(
    people: Path, tmp_path: Path
) -> None:
    # edges above every age leave the bucket (90, inf] empty: the slices analysis fails when
    # it runs; the run, its metrics and the other analysis are kept
    cfg = compose_cfg(_table_run(people, "analysis.slices.buckets={age:[90]}"), tmp_path / "run")
    mlx_run.run(cfg)
    record = _record(tmp_path / "run")
    assert record["status"] == "completed" and "test/acc" in record["metrics"]
    assert (
        "slices" in record["analysis_failed"] and "(90, inf]" in record["analysis_failed"]["slices"]
    )
    assert "acc" in record["analysis"]["metrics"]

    cfg = compose_cfg(_table_run(people, "analysis.slices.buckets={age:[40]}"), tmp_path / "ok")
    mlx_run.run(cfg)
    slices = _record(tmp_path / "ok")["analysis"]["slices"]["slices"]
    assert {(s["feature"], s["slice"]) for s in slices} >= {("sex", "F"), ("sex", "M")}


def test_a_slice_column_that_does_not_exist_stops_before_training(
    people: Path, tmp_path: Path
) -> None:
    cfg = compose_cfg(_table_run(people, "analysis.slices.columns=[sexe]"), tmp_path)
    with pytest.raises(ConfigError, match="Did you mean 'sex'"):
        mlx_run.run(cfg)
    assert not (tmp_path / "checkpoints").exists()


def test_analyses_are_logged_to_wandb(tmp_path: Path) -> None:
    cfg = compose_cfg(
        [
            *[o for o in QUICK if o != "tracking=none"],
            "tracking=wandb",
            "analysis=[metrics]",
            "analysis.metrics.n_boot=20",
        ],
        tmp_path,
    )
    mlx_run.run(cfg)
    acc = _record(tmp_path)["analysis"]["metrics"]["acc"]
    (files,) = (tmp_path / "wandb").glob("offline-run-*/files")
    (table,) = (files / "media" / "table" / "analysis").glob("metrics_*.table.json")
    rows = {row[0]: row[1:] for row in json.loads(table.read_text())["data"]}
    assert rows["acc"] == pytest.approx([acc["value"], acc["low"], acc["high"]])
    figures = {p.name.split("_")[0] for p in (files / "media" / "html").rglob("*.html")}
    assert {"confusion", "reliability"} <= figures


def test_a_gradient_method_on_a_final_int8_model_is_refused_before_training(
    tmp_path: Path,
) -> None:
    cfg = compose_cfg([*QUICK, "compression=[quantize]", "analysis=[explain]"], tmp_path)
    with pytest.raises(ConfigError, match="feature_ablation"):
        mlx_run.run(cfg)
    assert not (tmp_path / "checkpoints").exists()


def test_explain_and_introspection_in_a_run(tmp_path: Path) -> None:
    cfg = compose_cfg(
        [*QUICK, "analysis=[explain,introspection]", "analysis.explain.samples=20"], tmp_path
    )
    mlx_run.run(cfg)
    record = _record(tmp_path)
    assert not record.get("analysis_failed"), record.get("analysis_failed")
    explain = record["analysis"]["explain"]
    assert explain["completeness"]["max_abs_delta"] is not None
    assert (tmp_path / "analysis" / "explain" / "attribution_classes.svg").is_file()
    layers = record["analysis"]["introspection"]
    assert isinstance(layers["flags"], list)


def test_debug_in_a_run_on_a_table(people: Path, tmp_path: Path) -> None:
    table = [o for o in _table_run(people) if not o.startswith("analysis")]
    cfg = compose_cfg([*table, "analysis=[debug]", "analysis.debug.samples=100"], tmp_path / "run")
    mlx_run.run(cfg)
    record = _record(tmp_path / "run")
    assert not record.get("analysis_failed"), record.get("analysis_failed")
    assert "baseline" in record["analysis"]["debug"]
