"""The metrics analysis: every metric equals scikit-learn's on the same predictions, the
intervals cover the truth as often as they claim, the same seed gives the same numbers, and
degenerate rows do not crash it."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn import metrics as skm

from mlx.analysis.evidence import Evidence
from mlx.analysis.metrics import Metrics, metric_names, metric_table
from mlx.errors import ConfigError


def synthetic(n: int, k: int, p_correct: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and class probabilities of a classifier right with probability ``p_correct``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    right = rng.random(n) < p_correct
    pred = np.where(right, y, (y + rng.integers(1, k, n)) % k)
    top = rng.uniform(0.4, 0.99, n) if k > 2 else rng.uniform(0.5, 0.99, n)
    probs = np.tile(((1 - top) / (k - 1))[:, None], (1, k))
    probs[np.arange(n), pred] = top
    return y, probs


def evidence(y: np.ndarray, outputs: np.ndarray, task: str = "classification") -> Evidence:
    return Evidence(
        task=task,
        x=np.zeros((len(y), 1), dtype=np.float32),
        y=y,
        outputs=outputs,
        predict=lambda x: x,
        seed=7,
    )


@pytest.mark.parametrize("k", [2, 4])
def test_classification_metrics_equal_sklearn(k: int) -> None:
    y, probs = synthetic(400, k, 0.75, seed=k)
    pred = probs.argmax(axis=1)
    table = metric_table("classification", y, probs, n_boot=50)
    assert list(table) == list(metric_names("classification"))
    auc = (
        skm.roc_auc_score(y, probs[:, 1])
        if k == 2
        else skm.roc_auc_score(y, probs, multi_class="ovr")
    )
    expected = {
        "acc": skm.accuracy_score(y, pred),
        "balanced_acc": skm.balanced_accuracy_score(y, pred),
        "precision_macro": skm.precision_score(y, pred, average="macro"),
        "recall_macro": skm.recall_score(y, pred, average="macro"),
        "f1_macro": skm.f1_score(y, pred, average="macro"),
        "precision_weighted": skm.precision_score(y, pred, average="weighted"),
        "recall_weighted": skm.recall_score(y, pred, average="weighted"),
        "f1_weighted": skm.f1_score(y, pred, average="weighted"),
        "roc_auc": auc,
        "loss": skm.log_loss(y, probs),
    }
    for name, value in expected.items():
        row = table[name]
        assert row["value"] == pytest.approx(value, abs=1e-12), name
        assert row["low"] <= row["value"] <= row["high"], name
        assert row["high"] - row["low"] < 0.25, name


def test_ece_of_a_known_miscalibration() -> None:
    # every prediction 80% confident and 60% right: one bin, ECE = |0.8 - 0.6|
    y = np.zeros(500, dtype=np.int64)
    y[300:] = 1
    probs = np.tile([0.8, 0.2], (500, 1))
    assert metric_table("classification", y, probs, n_boot=0)["ece"]["value"] == pytest.approx(
        0.2, abs=1e-5
    )


def confident(n: int, seed: int, overconfidence: float) -> tuple[np.ndarray, np.ndarray]:
    """A binary classifier whose confidence is uniform in [0.55, 1] and right with probability
    confidence - overconfidence: its population ECE is ``overconfidence`` exactly."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.55, 1.0, n)
    y = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < conf - overconfidence, y, 1 - y)
    probs = np.empty((n, 2))
    probs[np.arange(n), pred] = conf
    probs[np.arange(n), 1 - pred] = 1 - conf
    return y, probs


def test_ece_interval_holds_its_value_and_covers_the_true_error() -> None:
    # on 150 rows the resamples' ECE is biased upwards: the plain percentile interval missed the
    # value in 15% of these calibrated samples, the bias-shifted one never does
    for rep in range(40):
        row = metric_table("classification", *confident(150, rep, 0.0), n_boot=100, seed=rep)
        assert row["ece"]["low"] <= row["ece"]["value"] <= row["ece"]["high"], rep
    hits = 0
    for rep in range(40):
        y, probs = confident(150, 100 + rep, 0.1)
        row = metric_table("classification", y, probs, n_boot=100, seed=rep)["ece"]
        hits += row["low"] <= 0.1 <= row["high"]
    assert hits >= 32  # about 90% measured with 100 samples


def test_regression_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    pred = y + rng.normal(0.1, 0.5, 500)
    table = metric_table("regression", y, pred, n_boot=200, seed=3)
    assert list(table) == list(metric_names("regression"))
    expected = {
        "mae": skm.mean_absolute_error(y, pred),
        "rmse": skm.root_mean_squared_error(y, pred),
        "r2": skm.r2_score(y, pred),
        "loss": skm.mean_squared_error(y, pred),
        **{
            f"residual_q{q:02d}": v
            for q, v in zip(
                (5, 25, 50, 75, 95), np.percentile(y - pred, [5, 25, 50, 75, 95]), strict=True
            )
        },
    }
    for name, value in expected.items():
        assert table[name]["value"] == pytest.approx(value, abs=1e-12), name
        assert table[name]["low"] <= table[name]["value"] <= table[name]["high"], name


def test_accuracy_interval_covers_the_true_accuracy_95_percent_of_the_time() -> None:
    p, hits = 0.8, 0
    for rep in range(300):
        y, probs = synthetic(150, 3, p, seed=1000 + rep)
        row = metric_table("classification", y, probs, n_boot=0)["acc"]
        hits += row["low"] <= p <= row["high"]
    assert 0.92 <= hits / 300 <= 0.98


def test_bootstrap_interval_covers_the_true_mae_95_percent_of_the_time() -> None:
    # residuals N(0, 1): the true MAE is sqrt(2 / pi)
    truth, hits, reps = np.sqrt(2 / np.pi), 0, 300
    rng = np.random.default_rng(0)
    for rep in range(reps):
        y = rng.normal(size=300)
        row = metric_table("regression", y, y - rng.normal(size=300), n_boot=300, seed=rep)
        hits += row["mae"]["low"] <= truth <= row["mae"]["high"]
    assert 0.92 <= hits / reps <= 0.98


def test_weighted_resamples_equal_the_metrics_on_resampled_rows() -> None:
    # the bootstrap hands each resample to scikit-learn as row counts (or pair counts): the
    # interval must be the one of the metric computed on the resampled rows themselves
    y, probs = synthetic(120, 3, 0.7, seed=9)
    table = metric_table("classification", y, probs, n_boot=40, seed=11)
    rng = np.random.default_rng(11)
    draws: dict[str, list[float]] = {
        "balanced_acc": [],
        "precision_macro": [],
        "f1_weighted": [],
        "loss": [],
        "roc_auc": [],
    }
    for _ in range(40):
        idx = rng.integers(0, 120, 120)
        yb, pb = y[idx], probs[idx]
        draws["balanced_acc"].append(skm.balanced_accuracy_score(yb, pb.argmax(1)))
        draws["precision_macro"].append(
            skm.precision_score(yb, pb.argmax(1), average="macro", zero_division=0)
        )
        draws["f1_weighted"].append(skm.f1_score(yb, pb.argmax(1), average="weighted"))
        draws["loss"].append(skm.log_loss(yb, pb, labels=[0, 1, 2]))
        draws["roc_auc"].append(skm.roc_auc_score(yb, pb, multi_class="ovr"))
    for name, values in draws.items():
        low, high = np.quantile(values, [0.025, 0.975])
        # torchmetrics computes the resamples' ROC AUC and per-class scores in float32
        tolerance = 1e-12 if name == "loss" else 1e-6
        assert table[name]["low"] == pytest.approx(low, abs=tolerance), name
        assert table[name]["high"] == pytest.approx(high, abs=tolerance), name


def test_same_seed_same_numbers() -> None:
    y, probs = synthetic(200, 3, 0.7, seed=1)
    a = metric_table("classification", y, probs, n_boot=100, seed=5)
    b = metric_table("classification", y, probs, n_boot=100, seed=5)
    c = metric_table("classification", y, probs, n_boot=100, seed=6)
    assert a == b
    assert a["f1_macro"] != c["f1_macro"]


def test_undefined_metrics_on_degenerate_rows_do_not_crash() -> None:
    # one class only: ROC AUC undefined everywhere, the rest defined
    y = np.zeros(40, dtype=np.int64)
    probs = np.tile([0.7, 0.3], (40, 1))
    table = metric_table("classification", y, probs, n_boot=50)
    assert table["roc_auc"] == {"value": None, "low": None, "high": None}
    assert table["acc"]["value"] == 1.0
    # 8 rows of 4 classes, three of them once: most resamples miss a class (no ROC AUC)
    y, probs = synthetic(8, 4, 0.6, seed=2)
    y[:] = [0, 1, 2, 3, 0, 0, 0, 0]
    table = metric_table("classification", y, probs, n_boot=100)
    assert table["roc_auc"]["value"] is not None
    assert table["roc_auc"]["low"] is None  # too few resamples define it
    assert table["balanced_acc"]["low"] is not None
    json.dumps(table, allow_nan=False)


def test_run_writes_the_section_csv_and_figures(tmp_path) -> None:
    y, probs = synthetic(300, 3, 0.8, seed=4)
    section = Metrics(n_boot=50).run(evidence(y, probs), tmp_path)
    json.dumps(section, allow_nan=False)
    assert section["size"] == 300
    assert section["confusion"] == skm.confusion_matrix(y, probs.argmax(axis=1)).tolist()
    with (tmp_path / "metrics.csv").open() as f:
        rows = {r["metric"]: r for r in csv.DictReader(f)}
    assert float(rows["acc"]["value"]) == section["acc"]["value"]
    assert "ECE" in (tmp_path / "reliability.svg").read_text()

    rng = np.random.default_rng(1)
    target = rng.normal(size=200)
    section = Metrics(n_boot=20).run(evidence(target, target + 0.3, "regression"), tmp_path)
    assert section["residual_q50"]["value"] == pytest.approx(-0.3)
    assert (tmp_path / "residuals.svg").stat().st_size > 1000


def test_out_of_range_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="confidence"):
        Metrics(confidence=1.5)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_batched_pair_metrics_average_over_the_classes_that_occur() -> None:
    # class 2 predicted but never true, class 3 neither: scikit-learn's macro averages count the
    # first and skip the second; balanced accuracy counts only classes present in y
    from mlx.analysis.metrics import _resample_pair_metrics

    y = np.array([[0, 0, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])
    pred = np.array([[0, 2, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    batch = _resample_pair_metrics(y, pred, 4)
    for i in range(2):
        expected = {
            "balanced_acc": skm.balanced_accuracy_score(y[i], pred[i]),
            "precision_macro": skm.precision_score(y[i], pred[i], average="macro", zero_division=0),
            "recall_macro": skm.recall_score(y[i], pred[i], average="macro", zero_division=0),
            "f1_macro": skm.f1_score(y[i], pred[i], average="macro", zero_division=0),
            "f1_weighted": skm.f1_score(y[i], pred[i], average="weighted", zero_division=0),
        }
        for name, value in expected.items():
            assert batch[name][i] == pytest.approx(value, abs=1e-6), (i, name)
